#!/usr/bin/env bash
# A real third-party C project through drti: zlib 1.2.11, exactly as vendored in the
# crates.io package libz-sys 1.1.8 (the last libz-sys line that ships zlib whole, with its
# configure script, Makefile and test programs test/example.c, test/minigzip.c,
# test/infcover.c).
#
#   1. fetch libz-sys from crates.io with cargo (a throwaway manifest + `cargo fetch`),
#   2. build zlib twice with its own build system, unmodified:
#        CC=clang-19  ./configure && make      (plain)
#        CC=drti-cc   ./configure && make      (decorated)
#   3. run zlib's own tests (`make test`, ./infcover) and its minigzip on a 12 MiB input
#      at several levels: plain build, drti build without the agent, drti build with
#      LD_PRELOAD=libdrti_agent.so DRTI_HOT_THRESHOLD=100 (so the JIT really runs),
#   4. require identical output and exit status everywhere (compressed bytes included),
#   5. print the edges from the agent dumps (`drti report`) and the timings.
#
# Exits non-zero on any mismatch, on a failing test, or when no edge was inlined.
# Idempotent: everything lives under target/thirdparty/ and is rebuilt from the fetched
# sources on each run. Needs: cargo (network to crates.io unless cached), clang-19, make,
# and `make build` done (target/release/{drti-cc,drti,libdrti_agent.so,drti-jitd}).
# Environment: THIRDPARTY_JOBS (make -j, default 2), THIRDPARTY_THRESHOLD (default 100).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REL=$ROOT/target/release
WORK=$ROOT/target/thirdparty
CRATE=libz-sys
CRATE_VER=1.1.8
JOBS=${THIRDPARTY_JOBS:-2}
THRESHOLD=${THIRDPARTY_THRESHOLD:-100}
CLANG=${DRTI_CLANG:-clang-19}

say() { printf '\n== %s\n' "$*"; }
die() { printf 'thirdparty: FAIL: %s\n' "$*" >&2; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

for t in drti-cc drti libdrti_agent.so drti-jitd; do
    [ -e "$REL/$t" ] || die "$REL/$t is missing: run 'make build' first"
done
command -v "$CLANG" >/dev/null || die "$CLANG not found (scripts/setup.sh installs it)"
command -v make >/dev/null || die "make not found"
AGENT=$REL/libdrti_agent.so
# The caller's drti settings must not leak into the runs.
unset DRTI_HOT_THRESHOLD DRTI_LOG DRTI_LOG_FILE DRTI_DUMP DRTI_JIT DRTI_MAX_TARGETS \
      DRTI_PERF_MAP DRTI_DISABLE DRTI_SKIP LD_PRELOAD || true

mkdir -p "$WORK"

# ---------------------------------------------------------------- 1. fetch (crates.io)
say "fetch $CRATE $CRATE_VER from crates.io (cargo fetch)"
FETCH=$WORK/fetch
mkdir -p "$FETCH/src"
cat > "$FETCH/Cargo.toml" <<EOF
# Throwaway manifest: only used to have cargo download $CRATE $CRATE_VER's sources.
[package]
name = "drti-thirdparty-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$CRATE = "=$CRATE_VER"

# Not a member of the drti workspace.
[workspace]
EOF
[ -e "$FETCH/src/lib.rs" ] || : > "$FETCH/src/lib.rs"
# The sources are already cached after the first run: try offline first.
(cd "$FETCH" && { cargo fetch --offline >/dev/null 2>&1 || cargo fetch; }) \
    || die "cargo fetch of $CRATE $CRATE_VER failed"
MANIFEST=$(cd "$FETCH" && cargo metadata --format-version 1 --offline 2>/dev/null \
    | grep -o "\"manifest_path\":\"[^\"]*/$CRATE-$CRATE_VER/Cargo.toml\"" | head -n1 \
    | sed 's/^"manifest_path":"//; s/"$//')
[ -n "$MANIFEST" ] || die "cannot locate $CRATE-$CRATE_VER in the cargo registry cache"
SRC=$(dirname "$MANIFEST")/src/zlib
for f in configure Makefile.in test/example.c test/minigzip.c test/infcover.c; do
    [ -e "$SRC/$f" ] || die "$SRC/$f missing: $CRATE $CRATE_VER does not ship zlib whole"
done
echo "sources: $SRC ($(sed -n 's/^#define ZLIB_VERSION "\(.*\)"/zlib \1/p' "$SRC/zlib.h"))"

# ---------------------------------------------------------------- 2. build both ways
# build NAME CC: fresh copy of the sources, then zlib's own ./configure && make.
build() {
    local name=$1 cc=$2 dir=$WORK/$1 t0
    rm -rf "$dir"
    cp -R "$SRC" "$dir"
    t0=$(now_ms)
    if ! (cd "$dir" && CC="$cc" ./configure && make -j"$JOBS" && make infcover) \
            > "$WORK/$name.build.log" 2>&1; then
        tail -n 30 "$WORK/$name.build.log" >&2
        die "$name build failed (log: $WORK/$name.build.log)"
    fi
    echo "$name: CC=$cc ./configure && make -j$JOBS && make infcover: $(( $(now_ms) - t0 )) ms"
}
say "build zlib with its own configure/Makefile"
build plain "$CLANG"
build drti "$REL/drti-cc"
"$REL/drti" inspect "$WORK/drti/minigzip" > "$WORK/drti.inspect" \
    || die "drti inspect finds no drti metadata in the drti-cc build of minigzip"
echo "drti inspect drti/minigzip: $(grep -c . "$WORK/drti.inspect") lines of metadata listing"

# ---------------------------------------------------------------- 3. tests
# Test input: zlib's own sources and docs, repeated to 12 MiB (deterministic).
INPUT=$WORK/input.bin
if [ ! -s "$INPUT" ]; then
    (cd "$SRC" && cat ./*.c ./*.h ChangeLog FAQ README doc/*.txt) > "$WORK/input.seed"
    : > "$INPUT.tmp"
    while [ "$(stat -c %s "$INPUT.tmp")" -lt $((12 * 1024 * 1024)) ]; do
        cat "$WORK/input.seed" >> "$INPUT.tmp"
    done
    head -c $((12 * 1024 * 1024)) "$INPUT.tmp" > "$INPUT"
    rm -f "$INPUT.tmp" "$WORK/input.seed"
fi
LEVELS=(-1 -6 -9 -f)   # deflate_fast, deflate_slow, deflate_slow (max), filtered

# run_suite NAME BUILD MODE: runs every test of BUILD; MODE plain|agent. Writes the
# outputs and exit statuses to $WORK/out/NAME/, the agent dumps to $WORK/dumps/NAME/.
run_suite() {
    local name=$1 dir=$WORK/$2 mode=$3 out=$WORK/out/$1 dumps=$WORK/dumps/$1 t0 rc lvl
    local times=$WORK/times/$1 t1
    rm -rf "$out" "$dumps" "$times"
    mkdir -p "$out" "$dumps" "$times"
    # with_env DUMPNAME CMD...: CMD with the agent preloaded (mode agent) or plain.
    with_env() {
        local dn=$1; shift
        if [ "$mode" = agent ]; then
            # DRTI_JIT_NICE=0: the test suite runs many programs at once on few cores, and
            # the test needs the JIT to run while the program does.
            if [ -n "$dn" ]; then
                LD_PRELOAD=$AGENT DRTI_HOT_THRESHOLD=$THRESHOLD DRTI_JIT_NICE=0 DRTI_DUMP=$dumps/$dn.json "$@"
            else
                LD_PRELOAD=$AGENT DRTI_HOT_THRESHOLD=$THRESHOLD DRTI_JIT_NICE=0 "$@"
            fi
        else
            "$@"
        fi
    }
    t0=$(now_ms)
    # (a) zlib's own `make test` (static and shared example + minigzip round trip). Under
    # the agent every process of it (make, sh, example, minigzip...) has it preloaded; no
    # dump there (each process would overwrite the same file).
    rc=0; (cd "$dir" && with_env "" make -s test) > "$out/make-test.out" 2>&1 || rc=$?
    echo "$rc" > "$out/make-test.rc"
    # (b) the same test programs one by one, each with its own dump.
    rc=0; (cd "$dir" && with_env example ./example tmp_example) > "$out/example.out" 2>&1 || rc=$?
    echo "$rc" > "$out/example.rc"
    rc=0; (cd "$dir" && with_env infcover ./infcover) > "$out/infcover.out" 2>&1 || rc=$?
    echo "$rc" > "$out/infcover.rc"
    # (c) minigzip (zlib's test program) on 12 MiB at several levels, and back.
    for lvl in "${LEVELS[@]}"; do
        t1=$(now_ms)
        rc=0; with_env "minigzip$lvl" "$dir/minigzip" "$lvl" < "$INPUT" > "$out/input$lvl.gz" 2> "$out/minigzip$lvl.err" || rc=$?
        echo "$(( $(now_ms) - t1 ))" > "$times/minigzip$lvl"
        echo "$rc" > "$out/minigzip$lvl.rc"
        rc=0; with_env "minigzip-d$lvl" "$dir/minigzip" -d < "$out/input$lvl.gz" > "$out/input$lvl.back" 2> "$out/minigzip-d$lvl.err" || rc=$?
        echo "$rc" > "$out/minigzip-d$lvl.rc"
        if cmp -s "$INPUT" "$out/input$lvl.back"; then echo same > "$out/roundtrip$lvl"; else echo DIFFERENT > "$out/roundtrip$lvl"; fi
        rm -f "$out/input$lvl.back"
    done
    echo "$(( $(now_ms) - t0 ))" > "$times/total"
}

say "run zlib's tests: plain build, drti build, drti build + agent (DRTI_HOT_THRESHOLD=$THRESHOLD)"
run_suite plain plain plain
run_suite drti drti plain
run_suite agent drti agent

# ---------------------------------------------------------------- 4. compare
say "compare outputs and exit statuses against the plain clang-19 build"
fail=0
for f in "$WORK"/out/plain/*; do
    b=$(basename "$f")
    for v in drti agent; do
        if ! cmp -s "$f" "$WORK/out/$v/$b"; then
            echo "MISMATCH $v/$b differs from plain/$b"
            diff <(head -c 4000 "$f" | cat -v) <(head -c 4000 "$WORK/out/$v/$b" | cat -v) | head -n 20 || true
            fail=1
        fi
    done
done
for v in plain drti agent; do
    for rcf in "$WORK"/out/$v/*.rc; do
        [ "$(cat "$rcf")" = 0 ] || { echo "$v: $(basename "$rcf" .rc) exited $(cat "$rcf")"; fail=1; }
    done
    for r in "$WORK"/out/$v/roundtrip*; do
        [ "$(cat "$r")" = same ] || { echo "$v: minigzip round trip $(basename "$r") lost data"; fail=1; }
    done
done
grep -q 'zlib test OK' "$WORK/out/agent/make-test.out" || { echo "agent: make test did not say OK"; fail=1; }
[ "$fail" = 0 ] && echo "all $(ls "$WORK/out/plain" | wc -l) outputs and exit statuses identical; make test OK in all three"

# ---------------------------------------------------------------- 5. edges and timings
say "edges seen by the agent (drti report; caller -> callee: state, calls)"
inlined=0
for d in "$WORK"/dumps/agent/*.json; do
    [ -e "$d" ] || continue
    "$REL/drti" report "$d" > "$d.report" || { echo "drti report $d failed"; fail=1; continue; }
    edges=$(awk '/^edges/ {on=1; next} on && /^$/ {on=0} on && $1 != "caller" && NF >= 5 {printf "    %s (site %s) -> %s: %s (%s calls)\n", $1, $2, $3, $5, $4}' "$d.report")
    [ -n "$edges" ] || edges="    (no edge sampled)"
    echo "  $(basename "$d" .json):"
    echo "$edges"
    inlined=$((inlined + $(grep -c ': inlined (' <<< "$edges" || true)))
    if grep -q '"ok": *false' "$d"; then
        echo "    compile failed (see $d.report):"
        grep -A1 'compiles' "$d.report" | tail -n +2 | sed 's/^/      /'
    fi
done
echo "full reports: $WORK/dumps/agent/*.json.report"
[ "$inlined" -gt 0 ] || { echo "no edge was inlined"; fail=1; }

say "timings (all tests above: make test, example, infcover, minigzip ${LEVELS[*]} + -d on 12 MiB)"
p=$(cat "$WORK/times/plain/total"); dr=$(cat "$WORK/times/drti/total"); ag=$(cat "$WORK/times/agent/total")
printf '  %-38s %6s ms\n' "plain clang-19 build" "$p" \
    "drti-cc build, no agent" "$dr" \
    "drti-cc build + agent (threshold $THRESHOLD)" "$ag"
printf '  minigzip compression of 12 MiB, per level (ms):\n'
printf '    %-8s %8s %8s %8s\n' level plain drti agent
for lvl in "${LEVELS[@]}"; do
    printf '    %-8s %8s %8s %8s\n' "$lvl" "$(cat "$WORK/times/plain/minigzip$lvl")" \
        "$(cat "$WORK/times/drti/minigzip$lvl")" "$(cat "$WORK/times/agent/minigzip$lvl")"
done

if [ "$fail" != 0 ]; then
    echo "thirdparty: FAIL" >&2
    exit 1
fi
echo
echo "thirdparty: OK: zlib (from $CRATE $CRATE_VER) builds with drti-cc and passes its tests under the agent; $inlined inlined edge(s)"
