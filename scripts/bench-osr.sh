#!/usr/bin/env bash
# bench-osr.sh - on-stack replacement (issue 13): hot loops in functions entered once.
# Programs: tests/progs/osr_main.c (fn pointer in main), osr_main.cpp (virtual call in
# main), methcall.cpp (Shootout-style method calls in main), demo/sort.c (main's checking
# loop). Variants: plain (clang-19 -O2), decorated (drti-cc -O2, no agent), agent (default
# settings), agent at threshold 1. Rounds are interleaved; medians and ratios printed.
# Usage: scripts/bench-osr.sh [ROUNDS]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release
OUT=$REPO/build/bench-osr
ROUNDS=${1:-5}
for f in drti-cc drti-c++ libdrti_agent.so drti-jitd; do
    [ -e "$BIN/$f" ] || { echo "[bench-osr] ERROR: $BIN/$f missing: run 'make build' first" >&2; exit 1; }
done
mkdir -p "$OUT"
build() { # name source
    local cc=clang-19 dcc=$BIN/drti-cc
    case $2 in *.cpp) cc=clang++-19 dcc=$BIN/drti-c++ ;; esac
    "$cc" -O2 -o "$OUT/$1-plain" "$REPO/$2"
    "$dcc" -O2 -o "$OUT/$1-drti" "$REPO/$2"
}
build osr_main_c tests/progs/osr_main.c
build osr_main_cpp tests/progs/osr_main.cpp
build methcall tests/progs/methcall.cpp
build sort demo/sort.c
exec python3 "$REPO/scripts/bench-osr/run.py" "$BIN" "$OUT" "$ROUNDS"
