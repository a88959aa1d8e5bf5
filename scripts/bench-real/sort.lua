-- bench-real Lua workload: sort records with Lua comparators (table.sort calls back into
-- the VM for every comparison) and with the default order, several times over.
-- usage: lua sort.lua N ROUNDS
local n = tonumber(arg[1]) or 200000
local rounds = tonumber(arg[2]) or 3

local seed = 12345
local function rand(m)  -- deterministic LCG, same on every build
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed % m
end

local names = {}
for i = 1, 500 do
  names[i] = string.format("%s-%04d", string.char(97 + rand(26), 97 + rand(26), 97 + rand(26)), rand(10000))
end

local digest = 0
local function mix(x) digest = (digest * 31 + x) % 4294967296 end

for r = 1, rounds do
  local recs = {}
  for i = 1, n do
    recs[i] = { name = names[rand(#names) + 1], score = rand(100000) / 7, id = i }
  end
  -- by name, then descending score, then id: a comparator a user would write
  table.sort(recs, function(a, b)
    if a.name ~= b.name then return a.name < b.name end
    if a.score ~= b.score then return a.score > b.score end
    return a.id < b.id
  end)
  for i = 1, n, 97 do mix(recs[i].id) end
  -- by score alone
  table.sort(recs, function(a, b) return a.score < b.score or (a.score == b.score and a.id < b.id) end)
  for i = 1, n, 89 do mix(recs[i].id) end
  -- plain numbers, default comparison
  local nums = {}
  for i = 1, n do nums[i] = rand(1000000) end
  table.sort(nums)
  for i = 1, n, 101 do mix(nums[i]) end
end
print(string.format("sort n=%d rounds=%d digest=%d", n, rounds, digest))
