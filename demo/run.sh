#!/usr/bin/env bash
# run.sh - the drti demo (`make demo`).
#
# Builds the demo programs four ways and races them on the benchmark cases:
#   plain   clang-19 / clang++-19 -O2
#   pgo     clang IR PGO: -fprofile-generate build, a training run, llvm-profdata merge,
#           rebuild with -fprofile-use (one profile per program).
#           IR PGO is the fair peer: the front-end route (-fprofile-instr-generate /
#           -fprofile-instr-use) records no indirect-call targets, so it can never
#           promote the hot indirect call that drti inlines.
#   drti    built with drti-cc / drti-c++, run with LD_PRELOAD=libdrti_agent.so and
#           DRTI_DUMP (default threshold)
#   oracle  the *-oracle variants of the plain build: call target fixed at compile time
#
# Every benchmark case runs all variants interleaved (plain, pgo, drti, oracle, plain, ...)
# for ROUNDS rounds; every run is timed with the wall clock and its stdout must be
# identical to plain's.  Prints a Markdown table of medians to stdout, then the compiles
# of the kernel drti run (from its dump) and `drti report` for it.  Progress goes to
# stderr.
#
# Environment:
#   DEMO_ROUNDS=N   rounds per case (default 5, minimum 5)
#   DEMO_O3=1       repeat everything at -O3 as well (off by default, to keep time)
#
# Works from any cwd; builds into build/demo/ of the repo.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release
OUT=$REPO/build/demo
ROUNDS=${DEMO_ROUNDS:-5}
[ "$ROUNDS" -ge 5 ] 2>/dev/null || ROUNDS=5

CC=clang-19
CXX=clang++-19
PROFDATA=llvm-profdata-19

log() { echo "[demo] $*" >&2; }
die() { echo "[demo] ERROR: $*" >&2; exit 1; }

for tool in "$CC" "$CXX" "$PROFDATA" python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
for f in drti-cc drti-c++ drti libdrti_agent.so drti-jitd; do
    [ -e "$BIN/$f" ] || die "$BIN/$f missing: run 'make build' first"
done
AGENT=$BIN/libdrti_agent.so

mkdir -p "$OUT"
# The demo's own code cache, empty at start: round 1 compiles, later rounds patch from it
# (what a user's second run of a program does).
CACHE=$OUT/cache
rm -rf "$CACHE"

# build NAME DIR CC CXX FLAGS... : demo/build.sh with its chatter in a log file.
build() {
    local name=$1 dir=$2
    shift 2
    local logf=$OUT/logs/build-$name.log
    mkdir -p "$OUT/logs"
    if ! bash "$REPO/demo/build.sh" "$dir" "$@" >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2
        die "build '$name' failed (full log: $logf)"
    fi
}

# Benchmark cases: id | program | arguments (normal size).  Oracle arguments are the same.
CASES=(
    "kernel twice|kernel|twice"
    "plugin_host ./plugin_twice.so|plugin_host|./plugin_twice.so"
    "virtual mono|virtual|mono"
    "virtual poly|virtual|poly"
    "sort asc|sort|asc"
)
# PGO training runs per program (smaller sizes).  virtual is trained on both of its
# benchmark cases, merged into one profile, as one binary serves both.
train_args() {
    case $1 in
        kernel)      echo "twice 20000" ;;
        plugin_host) echo "./plugin_twice.so 20000" ;;
        virtual)     echo "mono 20000;poly 20000" ;;
        sort)        echo "asc 1500" ;;
    esac
}
PROGRAMS=(kernel plugin_host virtual sort)

RUN_OUT=$(mktemp "${TMPDIR:-/tmp}/drti-demo.XXXXXX")
RUN_ERR=$(mktemp "${TMPDIR:-/tmp}/drti-demo.XXXXXX")
trap 'rm -f "$RUN_OUT" "$RUN_ERR"' EXIT

# timed_run DIR ENV... -- PROG ARGS... : run in DIR, stdout -> $RUN_OUT, stderr ->
# $RUN_ERR, wall-clock ms -> $MS.  Exit code -> $RC.
timed_run() {
    local dir=$1
    shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local t0 t1
    t0=$(date +%s%N)
    set +e
    (cd "$dir" && exec env ${envs[@]+"${envs[@]}"} "$@") >"$RUN_OUT" 2>"$RUN_ERR"
    RC=$?
    set -e
    t1=$(date +%s%N)
    MS=$(( (t1 - t0) / 1000 ))   # microseconds; converted to ms in the report
}

# bench_level OPT : build four ways at OPT, run all cases, print the table.
bench_level() {
    local opt=$1
    local L=$OUT/${opt#-}
    local PLAIN=$L/plain GEN=$L/pgo-gen PGO=$L/pgo DRTI=$L/drti RAW=$L/profraw DUMPS=$L/dumps
    rm -rf "$RAW" "$DUMPS"
    mkdir -p "$RAW" "$DUMPS"

    log "[$opt] building plain ($CC $opt)..."
    build "$opt-plain" "$PLAIN" "$CC" "$CXX" "$opt"

    log "[$opt] building pgo instrumented (-fprofile-generate)..."
    build "$opt-pgo-gen" "$GEN" "$CC" "$CXX" "$opt" "-fprofile-generate=$RAW"

    local p run args
    for p in "${PROGRAMS[@]}"; do
        mkdir -p "$RAW/$p"
        IFS=';' read -r -a runs <<<"$(train_args "$p")"
        for run in "${runs[@]}"; do
            log "[$opt] pgo training run: $p $run"
            read -r -a args <<<"$run"
            # %m: the host and the instrumented plugin each write their own file.
            timed_run "$GEN" "LLVM_PROFILE_FILE=$RAW/$p/%m-%p.profraw" -- "./$p" "${args[@]}"
            [ "$RC" -eq 0 ] || { cat "$RUN_ERR" >&2; die "pgo training run '$p $run' exited $RC"; }
        done
        log "[$opt] llvm-profdata merge -> $p.profdata"
        "$PROFDATA" merge -o "$RAW/$p.profdata" "$RAW/$p"/*.profraw \
            || die "llvm-profdata merge for $p failed"
    done

    # build.sh builds every program with the same flags, so build once per profile and
    # use only the program that profile belongs to (plugin_host also uses its plugins).
    for p in "${PROGRAMS[@]}"; do
        log "[$opt] building pgo for $p (-fprofile-use=$p.profdata)..."
        build "$opt-pgo-$p" "$PGO/$p" "$CC" "$CXX" "$opt" "-fprofile-use=$RAW/$p.profdata"
    done

    log "[$opt] building drti (drti-cc $opt)..."
    build "$opt-drti" "$DRTI" "$BIN/drti-cc" "$BIN/drti-c++" "$opt"

    local results=$L/times.tsv
    : >"$results"
    local KERNEL_DUMP=""
    local r c id prog cargs v dir exe envs ref dump
    for ((r = 1; r <= ROUNDS; r++)); do
        for c in "${CASES[@]}"; do
            IFS='|' read -r id prog cargs <<<"$c"
            read -r -a args <<<"$cargs"
            log "[$opt] round $r/$ROUNDS: $id"
            ref=""
            for v in plain pgo drti oracle; do
                envs=()
                case $v in
                    plain) dir=$PLAIN; exe=$prog ;;
                    pgo) dir=$PGO/$prog; exe=$prog ;;
                    drti)
                        dir=$DRTI; exe=$prog
                        dump=$DUMPS/${id//[^A-Za-z0-9_]/_}-r$r.json
                        envs=("LD_PRELOAD=$AGENT" "DRTI_DUMP=$dump" "DRTI_CACHE_DIR=$CACHE")
                        ;;
                    oracle)
                        dir=$PLAIN; exe=$prog-oracle
                        if [ "$id" = "virtual poly" ]; then
                            continue
                        fi
                        ;;
                esac
                timed_run "$dir" ${envs[@]+"${envs[@]}"} -- "./$exe" "${args[@]}"
                if [ "$RC" -ne 0 ]; then
                    cat "$RUN_ERR" >&2
                    die "$v run of '$id' ($dir/$exe ${args[*]}) exited with status $RC"
                fi
                if [ "$v" = plain ]; then
                    ref=$(cat "$RUN_OUT")
                elif [ "$(cat "$RUN_OUT")" != "$ref" ]; then
                    echo "plain:  $ref" >&2
                    echo "$v: $(cat "$RUN_OUT")" >&2
                    die "OUTPUT MISMATCH: $v differs from plain on '$id' ($dir/$exe ${args[*]})"
                fi
                if [ -s "$RUN_ERR" ]; then
                    log "note: $v '$id' wrote to stderr: $(head -c 300 "$RUN_ERR")"
                fi
                if [ "$v" = drti ] && [ "$id" = "kernel twice" ]; then
                    KERNEL_DUMP=$dump
                fi
                printf '%s\t%s\t%s\t%s\n' "$id" "$v" "$r" "$MS" >>"$results"
            done
        done
    done

    echo
    echo "## drti demo at $opt (wall-clock medians of $ROUNDS interleaved rounds)"
    echo
    python3 - "$results" <<'PY'
import sys, statistics
from collections import defaultdict
t = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    case, v, r, us = line.rstrip("\n").split("\t")
    if case not in order:
        order.append(case)
    t[(case, v)].append(int(us) / 1000.0)
def med(case, v):
    xs = t.get((case, v))
    return statistics.median(xs) if xs else None
def ms(x):
    return "n/a" if x is None else f"{x:.1f}"
def ratio(a, b):
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"
print("| case | plain ms | PGO ms | drti ms | oracle ms | drti/plain speed-up | drti vs oracle ratio | PGO speed-up |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for c in order:
    p, g, d, o = (med(c, v) for v in ("plain", "pgo", "drti", "oracle"))
    print(f"| {c} | {ms(p)} | {ms(g)} | {ms(d)} | {ms(o)} | {ratio(p, d)} | {ratio(d, o)} | {ratio(p, g)} |")
print()
print("speed-up = plain time / variant time; drti vs oracle ratio = drti time / oracle time (1.00x = as fast as the oracle).")
PY

    echo
    echo "### kernel drti run: compiles (from $KERNEL_DUMP)"
    echo
    python3 - "$KERNEL_DUMP" <<'PY'
import sys, json
d = json.load(open(sys.argv[1]))
def f(x):
    return "n/a" if x is None else (f"{x:.1f}" if isinstance(x, (int, float)) else str(x))
print("| function | inlined | ms | hot_to_patch_ms | code_bytes | ok |")
print("|---|---|---:|---:|---:|---|")
for c in d.get("compiles", []):
    print(f"| {c.get('function')} | {', '.join(c.get('inlined') or []) or '-'} | {f(c.get('ms'))} "
          f"| {f(c.get('hot_to_patch_ms'))} | {c.get('code_bytes', 'n/a')} "
          f"| {c.get('ok')}{'' if c.get('ok') else ' (' + str(c.get('error')) + ')'} |")
if not d.get("compiles"):
    print("| (no compiles) | | | | | |")
PY
    echo
    echo "### drti report $KERNEL_DUMP"
    echo
    echo '```'
    "$BIN/drti" report "$KERNEL_DUMP" || die "drti report failed"
    echo '```'
}

start=$(date +%s)
bench_level -O2
if [ "${DEMO_O3:-0}" = 1 ]; then
    bench_level -O3
fi
log "done in $(( $(date +%s) - start )) s"
exit 0
