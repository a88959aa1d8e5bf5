#!/usr/bin/env bash
# bench.sh - drti overhead benchmark (`make bench`).
#
# 1. Decoration and profiling overhead on the kernel demo (default arguments):
#      plain      clang-19 -O2
#      decorated  drti-cc -O2, run without the agent
#      profiling  decorated, LD_PRELOAD=libdrti_agent.so DRTI_JIT=0 (profile only)
#    run interleaved for BENCH_ROUNDS rounds (default 7, minimum 7); prints the medians
#    and the ratios decorated/plain (design target: <= 1.01) and profiling/decorated.
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
for f in drti-cc drti-c++ libdrti_agent.so libdrti_jit.so; do
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
ref=""
for ((r = 1; r <= ROUNDS; r++)); do
    log "round $r/$ROUNDS: kernel plain, decorated, profiling"
    for v in plain decorated profiling; do
        case $v in
            plain)     envs=();                                exe=$OUT/plain/kernel ;;
            decorated) envs=();                                exe=$OUT/drti/kernel ;;
            profiling) envs=("LD_PRELOAD=$AGENT" "DRTI_JIT=0"); exe=$OUT/drti/kernel ;;
        esac
        timed_run ${envs[@]+"${envs[@]}"} -- "$exe"
        if [ "$RC" -ne 0 ]; then
            cat "$RUN_ERR" >&2
            die "$v kernel run ($exe) exited with status $RC"
        fi
        if [ "$v" = plain ]; then
            ref=$(cat "$RUN_OUT")
        elif [ "$(cat "$RUN_OUT")" != "$ref" ]; then
            echo "plain: $ref" >&2
            echo "$v: $(cat "$RUN_OUT")" >&2
            die "OUTPUT MISMATCH: $v kernel differs from plain"
        fi
        [ -s "$RUN_ERR" ] && log "note: $v wrote to stderr: $(head -c 300 "$RUN_ERR")"
        printf 'kernel\t%s\t%s\n' "$v" "$US" >>"$RESULTS"
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

python3 - "$RESULTS" "$ROUNDS" "$TRUE_RUNS" <<'PY'
import sys, statistics
from collections import defaultdict
t = defaultdict(list)
for line in open(sys.argv[1]):
    prog, v, us = line.rstrip("\n").split("\t")
    t[(prog, v)].append(int(us) / 1000.0)
rounds, true_runs = sys.argv[2], sys.argv[3]
m = {k: statistics.median(v) for k, v in t.items()}
p, d, f = m[("kernel", "plain")], m[("kernel", "decorated")], m[("kernel", "profiling")]
print(f"## drti overhead: kernel twice 60000 1000, -O2 (wall-clock medians of {rounds} interleaved rounds)")
print()
print("| variant | median ms | min ms | max ms |")
print("|---|---:|---:|---:|")
for v, desc in (("plain", "plain (clang-19 -O2)"),
                ("decorated", "decorated (drti-cc -O2), no agent"),
                ("profiling", "decorated + agent, DRTI_JIT=0 (profiling only)")):
    xs = t[("kernel", v)]
    print(f"| {desc} | {statistics.median(xs):.1f} | {min(xs):.1f} | {max(xs):.1f} |")
print()
print("| ratio | value |")
print("|---|---:|")
print(f"| decorated / plain (design target <= 1.01) | {d / p:.3f} |")
print(f"| profiling / decorated | {f / d:.3f} |")
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
