#!/usr/bin/env bash
# bench-budget.sh - how DRTI_JIT_BUDGET trades JIT CPU for speed on a program whose compile
# candidates keep coming (scripts/bench-budget/gen.py: PHASES phase functions run one after
# another, each a loop calling a tiny callback through a pointer). Prints, per budget, the
# medians over ROUNDS interleaved rounds of wall and CPU time relative to plain, compiles
# and JIT CPU ms.
# Environment: PHASES (120), BULK (60 lines of arithmetic per phase), CALLS (20000),
# REPS (4000 phase calls per phase), ROUNDS (3), BUDGETS ("0.05 0.1 0.25 0.5 1").
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release
OUT=$REPO/build/bench-budget
PHASES=${PHASES:-120} BULK=${BULK:-60} CALLS=${CALLS:-20000} REPS=${REPS:-4000} ROUNDS=${ROUNDS:-3}
BUDGETS=${BUDGETS:-"0.05 0.1 0.25 0.5 1"}
mkdir -p "$OUT"
python3 "$REPO/scripts/bench-budget/gen.py" "$PHASES" "$BULK" > "$OUT/budget.c"
clang-19 -O2 "$OUT/budget.c" -o "$OUT/budget_plain"
"$BIN/drti-cc" -O2 "$OUT/budget.c" -o "$OUT/budget_drti"
python3 - "$OUT" "$BIN/libdrti_agent.so" "$CALLS" "$REPS" "$ROUNDS" $BUDGETS <<'PY'
import json, os, resource, subprocess, statistics, sys, time
out, agent, calls, reps, rounds, budgets = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:]
def run(exe, env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("DRTI_") and k != "LD_PRELOAD"}
    e.update(env)
    t = time.monotonic()
    p = subprocess.run([exe, calls, reps], env=e, stdout=subprocess.PIPE, check=True)
    return time.monotonic() - t, p.stdout
rows = {b: [] for b in ["plain"] + budgets}
expected = None
for r in range(rounds):
    for v in ["plain"] + budgets:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        if v == "plain":
            wall, stdout = run(f"{out}/budget_plain", {})
            info = (0, 0.0)
        else:
            dump = f"{out}/dump-{v}.json"
            wall, stdout = run(f"{out}/budget_drti", {"LD_PRELOAD": agent, "DRTI_JIT_BUDGET": v, "DRTI_DUMP": dump})
            d = json.load(open(dump))
            info = (sum(1 for c in d["compiles"] if c["ok"]), d["jit_cpu_ms"])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        expected = expected or stdout
        assert stdout == expected, f"{v}: output differs"
        rows[v].append((wall, cpu, info))
        print(f"round {r + 1} {v}: {wall:.2f} s wall, {cpu:.2f} s CPU", file=sys.stderr)
med = lambda xs: statistics.median(xs)
pw, pc = med([x[0] for x in rows["plain"]]), med([x[1] for x in rows["plain"]])
print("| budget | wall s | CPU s | wall/plain | CPU/plain | compiles | JIT CPU ms |")
print("|---|---:|---:|---:|---:|---:|---:|")
print(f"| plain | {pw:.2f} | {pc:.2f} | 1.00 | 1.00 | | |")
for b in budgets:
    w, c = med([x[0] for x in rows[b]]), med([x[1] for x in rows[b]])
    n, j = med([x[2][0] for x in rows[b]]), med([x[2][1] for x in rows[b]])
    print(f"| {b} | {w:.2f} | {c:.2f} | {w / pw:.2f} | {c / pc:.2f} | {n:.0f} | {j:.0f} |")
print(f"\nmedians of {rounds} rounds; outputs identical in every run")
PY
