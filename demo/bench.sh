#!/usr/bin/env bash
# bench.sh - drti overhead benchmark (`make bench`).
#
# 1. Decoration and profiling overhead on kernel, sort and virtual (default arguments):
#      plain      clang-19 -O2
#      decorated  drti-cc -O2, run without the agent
#      profiling  decorated, LD_PRELOAD=libdrti_agent.so DRTI_JIT=0 (profile only)
#    run interleaved for BENCH_ROUNDS rounds (default 7, minimum 7); prints the medians
#    and the ratios decorated/plain (design target: <= 1.01) and profiling/decorated.
#    Steady state of the kernel: oracle vs agent vs plain, from runs of 1x and 3x the
#    default iterations ((T3 - T1) / 2 cancels start-up and JIT latency), and the JIT's
#    compile and hot-to-patch medians from the agent runs' dumps.
# 2. Agent start-up cost: median over 30 interleaved runs of /bin/true with and without
#    LD_PRELOAD=libdrti_agent.so.
# Every run is timed with the wall clock.  Markdown on stdout, progress on stderr.
# Works from any cwd; builds into build/bench/ of the repo.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$REPO/target/release
OUT=$REPO/build/bench
AGENT=$BIN/libdrti_agent.so
ROUNDS=${BENCH_ROUNDS:-7}
[ "$ROUNDS" -ge 7 ] 2>/dev/null || ROUNDS=7
TRUE_RUNS=30

log() { echo "[bench] $*" >&2; }
die() { echo "[bench] ERROR: $*" >&2; exit 1; }

for tool in clang-19 clang++-19 python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
for f in drti-cc drti-c++ libdrti_agent.so drti-jitd; do
    [ -e "$BIN/$f" ] || die "$BIN/$f missing: run 'make build' first"
done
mkdir -p "$OUT/logs"

build() {
    local name=$1 dir=$2
    shift 2
    local logf=$OUT/logs/build-$name.log
    if ! bash "$REPO/demo/build.sh" "$dir" "$@" >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2
        die "build '$name' failed (full log: $logf)"
    fi
}

log "building plain (clang-19 -O2)..."
build plain "$OUT/plain" clang-19 clang++-19 -O2
log "building decorated (drti-cc -O2)..."
build drti "$OUT/drti" "$BIN/drti-cc" "$BIN/drti-c++" -O2

RUN_OUT=$(mktemp "${TMPDIR:-/tmp}/drti-bench.XXXXXX")
RUN_ERR=$(mktemp "${TMPDIR:-/tmp}/drti-bench.XXXXXX")
trap 'rm -f "$RUN_OUT" "$RUN_ERR"' EXIT

# timed_run ENV... -- PROG ARGS... : wall-clock microseconds -> $US, exit code -> $RC.
timed_run() {
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    local t0 t1
    t0=$(date +%s%N)
    set +e
    env ${envs[@]+"${envs[@]}"} "$@" >"$RUN_OUT" 2>"$RUN_ERR"
    RC=$?
    set -e
    t1=$(date +%s%N)
    US=$(( (t1 - t0) / 1000 ))
}

RESULTS=$OUT/times.tsv
: >"$RESULTS"
DUMPS=$OUT/dumps
mkdir -p "$DUMPS"
# case name | program and arguments (relative to the build directory)
CASES=("kernel|kernel twice" "sort|sort asc" "virtual|virtual mono")
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS: plain, decorated, profiling; steady state: oracle and agent at 1x and 3x"
    for c in "${CASES[@]}"; do
        name=${c%%|*}
        read -r -a cmd <<<"${c#*|}"
        ref=""
        for v in plain decorated profiling; do
            case $v in
                plain)     envs=();                                dir=$OUT/plain ;;
                decorated) envs=();                                dir=$OUT/drti ;;
                profiling) envs=("LD_PRELOAD=$AGENT" "DRTI_JIT=0"); dir=$OUT/drti ;;
            esac
            timed_run ${envs[@]+"${envs[@]}"} -- "$dir/${cmd[0]}" "${cmd[@]:1}"
            [ "$RC" -eq 0 ] || { cat "$RUN_ERR" >&2; die "$v $name exited with status $RC"; }
            if [ -z "$ref" ]; then ref=$(cat "$RUN_OUT"); elif [ "$(cat "$RUN_OUT")" != "$ref" ]; then
                die "OUTPUT MISMATCH: $v $name differs from plain"; fi
            printf '%s\t%s\t%s\n' "$name" "$v" "$US" >>"$RESULTS"
        done
    done
    # Steady state: the difference between a 3x and a 1x run cancels start-up, profiling
    # warm-up and JIT latency, leaving the time of 2x iterations of optimised code.
    for iters in 60000 180000; do
        timed_run -- "$OUT/plain/kernel-oracle" twice "$iters"
        [ "$RC" -eq 0 ] || die "oracle exited $RC"
        printf 'steady\toracle-%s\t%s\n' "$iters" "$US" >>"$RESULTS"
        timed_run "LD_PRELOAD=$AGENT" "DRTI_DUMP=$DUMPS/kernel-$r-$iters.json" -- "$OUT/drti/kernel" twice "$iters"
        [ "$RC" -eq 0 ] || die "agent kernel exited $RC"
        printf 'steady\tagent-%s\t%s\n' "$iters" "$US" >>"$RESULTS"
        timed_run -- "$OUT/plain/kernel" twice "$iters"
        printf 'steady\tplain-%s\t%s\n' "$iters" "$US" >>"$RESULTS"
    done
done

log "agent start-up: $TRUE_RUNS interleaved runs of /bin/true with and without the agent"
for ((r = 1; r <= TRUE_RUNS; r++)); do
    timed_run -- /bin/true
    [ "$RC" -eq 0 ] || die "/bin/true exited $RC"
    printf 'true\twithout\t%s\n' "$US" >>"$RESULTS"
    timed_run "LD_PRELOAD=$AGENT" -- /bin/true
    if [ "$RC" -ne 0 ]; then
        cat "$RUN_ERR" >&2
        die "/bin/true with LD_PRELOAD=$AGENT exited with status $RC"
    fi
    [ -s "$RUN_ERR" ] && log "note: /bin/true with the agent wrote to stderr: $(head -c 300 "$RUN_ERR")"
    printf 'true\twith\t%s\n' "$US" >>"$RESULTS"
done

python3 - "$RESULTS" "$ROUNDS" "$TRUE_RUNS" "$DUMPS" <<'PY'
import sys, statistics
from collections import defaultdict
t = defaultdict(list)
for line in open(sys.argv[1]):
    prog, v, us = line.rstrip("\n").split("\t")
    t[(prog, v)].append(int(us) / 1000.0)
rounds, true_runs = sys.argv[2], sys.argv[3]
m = {k: statistics.median(v) for k, v in t.items()}
print(f"## decoration and profiling overhead, -O2 (wall-clock medians of {rounds} interleaved rounds)")
print()
print("| program | plain ms | decorated ms | profiling ms | decorated/plain (goal <= 1.01) | profiling/decorated (goal <= 1.03) |")
print("|---|---:|---:|---:|---:|---:|")
for name in ("kernel", "sort", "virtual"):
    p, d, f = m[(name, "plain")], m[(name, "decorated")], m[(name, "profiling")]
    print(f"| {name} | {p:.1f} | {d:.1f} | {f:.1f} | {d / p:.3f} | {f / d:.3f} |")
print()
def steady(v):
    return (m[("steady", f"{v}-180000")] - m[("steady", f"{v}-60000")]) / 2
so, sa, sp = steady("oracle"), steady("agent"), steady("plain")
print("## steady state, kernel twice: time of 60000 x 1000 calls, (T(3x) - T(1x)) / 2")
print()
print("| variant | ms | ratio to oracle |")
print("|---|---:|---:|")
for desc, x in (("plain", sp), ("drti agent", sa), ("oracle", so)):
    print(f"| {desc} | {x:.1f} | {x / so:.3f} |")
print()
import glob, json
comp, h2p, load = [], [], []
for f in glob.glob(sys.argv[4] + "/kernel-*.json"):
    d = json.load(open(f))
    if d.get("jit_load_ms") is not None:
        load.append(d["jit_load_ms"])
    for c in d["compiles"]:
        comp.append(c["ms"])
        if c.get("hot_to_patch_ms") is not None:
            h2p.append(c["hot_to_patch_ms"])
if comp:
    print(f"JIT (kernel, {len(comp)} compiles): compile median {statistics.median(comp):.1f} ms; "
          f"hot-to-patch median {statistics.median(h2p):.1f} ms; one-time LLVM load median {statistics.median(load):.1f} ms")
    print()
w, wo = m[("true", "with")], m[("true", "without")]
print(f"## agent start-up cost: /bin/true (wall-clock medians of {true_runs} interleaved runs)")
print()
print("| run | median ms |")
print("|---|---:|")
print(f"| /bin/true | {wo:.2f} |")
print(f"| LD_PRELOAD=libdrti_agent.so /bin/true | {w:.2f} |")
print(f"| difference (agent start-up) | {w - wo:.2f} |")
PY
exit 0
