-- bench-real Lua workload: text processing through the string, table and math libraries
-- (C functions the VM calls through lua_CFunction pointers): generate a text, count words
-- with gmatch, transform it with gsub/upper/format, rank the words with a comparator.
-- usage: lua text.lua WORDS ROUNDS
local nwords = tonumber(arg[1]) or 300000
local rounds = tonumber(arg[2]) or 3

local seed = 4242
local function rand(m)
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % m
end

local vocab = {}
for i = 1, 2000 do
  local len = 2 + rand(8)
  local t = {}
  for j = 1, len do t[j] = string.char(97 + rand(26)) end
  vocab[i] = table.concat(t)
end

local digest = 0
local function mix(x) digest = (digest * 31 + x) % 4294967296 end

for r = 1, rounds do
  local parts = {}
  for i = 1, nwords do
    local w = vocab[math.floor(math.sqrt(rand(4000000))) + 1]
    if rand(10) == 0 then w = string.upper(w) end
    parts[#parts + 1] = w
    if i % 12 == 0 then parts[#parts + 1] = "." end
  end
  local text = table.concat(parts, " ")
  local counts, order = {}, {}
  for w in string.gmatch(text, "%a+") do
    local k = string.lower(w)
    local c = counts[k]
    if c == nil then order[#order + 1] = k; counts[k] = 1 else counts[k] = c + 1 end
  end
  table.sort(order, function(a, b)
    local ca, cb = counts[a], counts[b]
    if ca ~= cb then return ca > cb end
    return a < b
  end)
  for i = 1, math.min(50, #order) do mix(counts[order[i]]); mix(string.byte(order[i], 1)) end
  local replaced, nrep = string.gsub(text, "(%a)(%a*)", function(h, t) return string.upper(h) .. t end)
  mix(nrep); mix(#replaced)
  local lines = {}
  for i = 1, #order do
    lines[i] = string.format("%-12s %6d %8.3f", order[i], counts[order[i]], math.log(counts[order[i]]))
  end
  local report = table.concat(lines, "\n")
  mix(#report); mix(string.byte(report, #report // 2))
  local s = string.sub(text, 1, 100000)
  mix(select(2, string.gsub(s, "%s", "")))
end
print(string.format("text words=%d rounds=%d digest=%d", nwords, rounds, digest))
