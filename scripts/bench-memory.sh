#!/usr/bin/env bash
# bench-memory.sh - what compiling outside the application costs and saves (issue 12):
#   * peak RSS of the application: plain, under the agent with an empty code cache (every
#     function compiled by drti-jitd), and with the cache the previous run filled (no
#     compile); the compiler process's own peak is reported apart;
#   * hot-to-patch on the kernel demo: a first (uncached) compile and a cache hit.
# Program: tests/progs/many_hot.cpp (64 hot drivers: 64 compiles per run at threshold 100).
# Rounds are interleaved; medians are printed. Usage: scripts/bench-memory.sh [ROUNDS]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release
OUT=$REPO/build/bench-memory
ROUNDS=${1:-5}
for f in drti-c++ drti-cc libdrti_agent.so drti-jitd; do
    [ -e "$BIN/$f" ] || { echo "[bench-memory] ERROR: $BIN/$f missing: run 'make build' first" >&2; exit 1; }
done
# GNU time measures the plain program's peak (scripts/setup.sh installs it when it can).
if [ ! -x /usr/bin/time ]; then echo "bench-memory: skip: /usr/bin/time (GNU time) is not installed"; exit 77; fi
mkdir -p "$OUT"
"$BIN/drti-c++" -O2 -o "$OUT/many_hot" "$REPO/tests/progs/many_hot.cpp"
"$BIN/drti-cc" -O2 -o "$OUT/kernel" "$REPO/demo/kernel.c"
exec python3 "$REPO/scripts/bench-memory/run.py" "$BIN" "$OUT" "$ROUNDS"
