#!/usr/bin/env bash
# bench-real.sh - drti on real third-party programs (`make bench-real`).
#
# Programs, fetched from the package registries into build/third-party/ (never committed):
#   lua    Lua 5.4.7 interpreter  crates.io lua-src 547.1.0 (library; scripts/bench-real/lua_run.c
#          plays lua.c) running sort.lua (table.sort with Lua comparators) and text.lua
#          (string/table/math C functions)
#   jpeg   libjpeg-turbo           crates.io mozjpeg-sys 2.2.3 (vendor/), jpeg_bench.c encoding
#          and decoding a 2048x1536 photo-like image
#   box2d  Box2D 2.3 (C++)         PyPI box2d-py 2.3.8 sdist, box2d_bench.cpp stepping a world
#   zstd   zstd 1.5.7              crates.io zstd-sys 2.1.3 (zstd/, built with zstd's own CMake),
#          zstd_bench.c compressing a log corpus at levels 1, 3, 9, 19
# Each is built four ways into build/bench-real/<variant>/<program>/ (build/bench-real-quick/
# with BENCH_REAL_QUICK=1):
#   plain      clang-19 -O2
#   pgo        clang-19 -O2 -fprofile-use (trained by one run of the same workloads with
#              -fprofile-generate, merged with llvm-profdata-19)
#   drti       drti-cc -O2: run without the agent (decorated) and under it (agent)
# The lua-src and mozjpeg-sys crates ship the C sources without their build systems, and
# box2d-py builds through setup.py; their makefiles (scripts/bench-real/*.mk) compile the
# files the packages' own build scripts compile.  zstd builds with its own CMake.
# scripts/bench-real/run.py then runs every workload on the four variants, interleaved, for
# BENCH_ROUNDS rounds, checks that all outputs are identical, and prints one Markdown table
# (stdout; also saved to table.md in the output directory).  Progress goes to stderr.
#
# Environment:
#   BENCH_ROUNDS          rounds (default 5; at least 5 unless BENCH_REAL_QUICK=1)
#   BENCH_REAL_ONLY       comma list of programs (lua,jpeg,box2d,zstd; default all)
#   BENCH_REAL_QUICK=1    small workloads, any number of rounds (the smoke test in make test)
#   BENCH_REAL_JOBS       make -j (default 2)
#   BENCH_REAL_AGENT_ENV  extra environment for the agent runs, e.g. "DRTI_HOT_THRESHOLD=1000"
# Exit status: 0 ok; 1 a build or a run failed or an output differed; 77 the sources could
# not be fetched (no network and no cache): "bench-real: skip: ..." on stdout.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/scripts/bench-real
BIN=$REPO/target/release
TP=$REPO/build/third-party
QUICK=${BENCH_REAL_QUICK:-0}
# Quick runs (the smoke test) keep their own builds and PGO profiles.
if [ "$QUICK" = 1 ]; then OUT=$REPO/build/bench-real-quick; else OUT=$REPO/build/bench-real; fi
JOBS=${BENCH_REAL_JOBS:-2}
ROUNDS=${BENCH_ROUNDS:-5}
if [ "$QUICK" != 1 ]; then
    [ "$ROUNDS" -ge 5 ] 2>/dev/null || ROUNDS=5
else
    [ "$ROUNDS" -ge 1 ] 2>/dev/null || ROUNDS=1
fi
ONLY=${BENCH_REAL_ONLY:-lua,jpeg,box2d,zstd}
CLANG=clang-19
CLANGXX=clang++-19

LUA_CRATE=lua-src LUA_VER=547.1.0
JPEG_CRATE=mozjpeg-sys JPEG_VER=2.2.3
ZSTD_CRATE=zstd-sys ZSTD_VER=2.1.3
BOX2D_PKG=box2d-py BOX2D_VER=2.3.8

log() { echo "[bench-real] $*" >&2; }
die() { echo "[bench-real] ERROR: $*" >&2; exit 1; }
skip() { echo "bench-real: skip: $*"; exit 77; }
selected() { [[ ",$ONLY," == *",$1,"* ]]; }

for p in ${ONLY//,/ }; do
    case $p in lua|jpeg|box2d|zstd) ;; *) die "BENCH_REAL_ONLY: unknown program '$p' (lua, jpeg, box2d, zstd)" ;; esac
done
for tool in $CLANG $CLANGXX llvm-profdata-19 make python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh installs the toolchain)"
done
if selected zstd; then command -v cmake >/dev/null || die "cmake not found (apt-get install cmake): zstd builds with its CMake"; fi
if selected box2d; then command -v pip >/dev/null || command -v pip3 >/dev/null || die "pip not found: box2d-py comes from PyPI"; fi
for f in drti-cc drti-c++ libdrti_agent.so drti-jitd; do
    [ -e "$BIN/$f" ] || die "$BIN/$f missing: run 'make build' first"
done
mkdir -p "$TP" "$OUT/logs"

# ------------------------------------------------------------------ sources
# crate_src CRATE VERSION: cargo fetches the crate (pinned) through a scratch manifest and
# copies its sources to $TP/CRATE-VERSION; prints that directory.
crate_src() {
    local crate=$1 ver=$2 dest=$TP/$1-$2 fetch=$TP/fetch-$1 manifest
    if [ -e "$dest/.complete" ]; then echo "$dest"; return 0; fi
    mkdir -p "$fetch/src"
    : > "$fetch/src/lib.rs"
    cat > "$fetch/Cargo.toml" <<EOF
# Scratch manifest: only used to have cargo download $crate $ver's sources for bench-real.
[package]
name = "drti-bench-real-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$crate = "=$ver"

[workspace]
EOF
    if ! (cd "$fetch" && { cargo fetch --offline >/dev/null 2>&1 || CARGO_NET_RETRY=1 CARGO_HTTP_TIMEOUT=30 cargo fetch >"$OUT/logs/fetch-$crate.log" 2>&1; }); then
        return 1
    fi
    manifest=$(cd "$fetch" && cargo metadata --format-version 1 --offline 2>/dev/null \
        | python3 -c "import json,sys; d=json.load(sys.stdin); print(next(p['manifest_path'] for p in d['packages'] if p['name']=='$crate'))") \
        || return 1
    rm -rf "$dest"
    cp -R "$(dirname "$manifest")" "$dest"
    touch "$dest/.complete"
    echo "$dest"
}

# pypi_src NAME VERSION: the sdist via pip (no binaries, no dependencies), unpacked to $TP.
pypi_src() {
    local name=$1 ver=$2 dest=$TP/$1-$2 pip tarball
    if [ -e "$dest/.complete" ]; then echo "$dest"; return 0; fi
    pip=$(command -v pip || command -v pip3)
    mkdir -p "$TP/pypi"
    tarball=$TP/pypi/$name-$ver.tar.gz
    if [ ! -s "$tarball" ]; then
        "$pip" download --timeout 30 --retries 1 --no-binary :all: --no-deps -d "$TP/pypi" "$name==$ver" >"$OUT/logs/fetch-$name.log" 2>&1 || return 1
    fi
    [ -s "$tarball" ] || return 1
    rm -rf "$dest"
    tar -xzf "$tarball" -C "$TP" || return 1
    touch "$dest/.complete"
    echo "$dest"
}

declare -A SRC
if selected lua; then
    d=$(crate_src $LUA_CRATE $LUA_VER) || skip "cannot fetch crates.io $LUA_CRATE $LUA_VER (log: $OUT/logs/fetch-$LUA_CRATE.log)"
    SRC[lua]=$d/lua-5.4.7
fi
if selected jpeg; then
    d=$(crate_src $JPEG_CRATE $JPEG_VER) || skip "cannot fetch crates.io $JPEG_CRATE $JPEG_VER (log: $OUT/logs/fetch-$JPEG_CRATE.log)"
    SRC[jpeg]=$d/vendor
fi
if selected zstd; then
    d=$(crate_src $ZSTD_CRATE $ZSTD_VER) || skip "cannot fetch crates.io $ZSTD_CRATE $ZSTD_VER (log: $OUT/logs/fetch-$ZSTD_CRATE.log)"
    SRC[zstd]=$d/zstd
fi
if selected box2d; then
    d=$(pypi_src $BOX2D_PKG $BOX2D_VER) || skip "cannot fetch PyPI $BOX2D_PKG $BOX2D_VER sdist (log: $OUT/logs/fetch-$BOX2D_PKG.log)"
    SRC[box2d]=$d
fi
for p in "${!SRC[@]}"; do
    [ -d "${SRC[$p]}" ] || die "$p: ${SRC[$p]} missing from the package"
    log "sources: $p: ${SRC[$p]}"
done

# ------------------------------------------------------------------ workloads
SPEC=$OUT/workloads.tsv
: > "$SPEC"
w() { selected "$1" && printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$SPEC"; return 0; }
if [ "$QUICK" = 1 ]; then
    w lua sort "{bin}/lua/lua {data}/sort.lua 20000 1"
    w lua text "{bin}/lua/lua {data}/text.lua 60000 1"
    w jpeg encode "{bin}/jpeg/jpeg_bench encode 640 480 1"
    w jpeg decode "{bin}/jpeg/jpeg_bench decode 640 480 2"
    w box2d world "{bin}/box2d/box2d_bench 200 200"
    w zstd "-3" "{bin}/zstd/zstd_bench 3 4"
else
    w lua sort "{bin}/lua/lua {data}/sort.lua 60000 3"
    w lua text "{bin}/lua/lua {data}/text.lua 300000 5"
    w jpeg encode "{bin}/jpeg/jpeg_bench encode 2048 1536 6"
    w jpeg decode "{bin}/jpeg/jpeg_bench decode 2048 1536 8"
    w box2d world "{bin}/box2d/box2d_bench 500 1500"
    w zstd "-1" "{bin}/zstd/zstd_bench 1 48"
    w zstd "-3" "{bin}/zstd/zstd_bench 3 48"
    w zstd "-9" "{bin}/zstd/zstd_bench 9 16"
    w zstd "-19" "{bin}/zstd/zstd_bench 19 1"
fi

# ------------------------------------------------------------------ builds
# build PROGRAM VARIANT CC CXX FLAGS: the program's build into $OUT/VARIANT/PROGRAM, skipped
# when a stamp shows the same compilers, flags, build files and inputs built it already.
build() {
    local prog=$1 variant=$2 cc=$3 cxx=$4 flags=$5 dir=$OUT/$2/$1 stamp logf t0
    logf=$OUT/logs/build-$variant-$prog.log
    stamp=$( { echo "$cc $cxx $flags ${SRC[$prog]}"; cat "$HERE"/$prog*;
               [ -d "$HERE/jpeg-config" ] && [ "$prog" = jpeg ] && cat "$HERE"/jpeg-config/*;
               [ "$prog" = box2d ] && cat "$HERE"/box2d-shim/*;
               case $cc in "$BIN"/*) stat -c '%s %Y' "$BIN/drti-cc" ;; esac;
               case $flags in *-fprofile-use=*) sha256sum "${flags##*-fprofile-use=}" ;; esac; } 2>/dev/null \
             | sha256sum | cut -c1-16)
    if [ -e "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
        log "build $variant/$prog: up to date"
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    t0=$(date +%s)
    log "build $variant/$prog: CC=$cc $flags"
    if ! (
        case $prog in
            lua|jpeg) make -f "$HERE/$prog.mk" -j"$JOBS" SRC="${SRC[$prog]}" OUT="$dir" CC="$cc" CFLAGS="$flags -w" ;;
            box2d) make -f "$HERE/box2d.mk" -j"$JOBS" SRC="${SRC[$prog]}" OUT="$dir" CXX="$cxx" CXXFLAGS="$flags -w" ;;
            zstd)
                # zstd's own CMake build of libzstd (its programs/ are not in the crate).
                cmake -S "${SRC[zstd]}/build/cmake" -B "$dir/cmake" -DCMAKE_C_COMPILER="$cc" \
                    -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS_RELEASE="$flags -DNDEBUG -w" \
                    -DZSTD_BUILD_PROGRAMS=OFF -DZSTD_BUILD_TESTS=OFF -DZSTD_BUILD_SHARED=OFF \
                    -DZSTD_BUILD_STATIC=ON \
                && make -C "$dir/cmake" -j"$JOBS" \
                && "$cc" $flags -w -I"${SRC[zstd]}/lib" -o "$dir/zstd_bench" "$HERE/zstd_bench.c" \
                    "$dir/cmake/lib/libzstd.a" -lpthread ;;
        esac
    ) >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2
        die "build $variant/$prog failed (log: $logf)"
    fi
    echo "$stamp" > "$dir/.stamp"
    log "build $variant/$prog: $(( $(date +%s) - t0 )) s"
}

PROGRAMS=()
for p in lua jpeg box2d zstd; do selected $p && PROGRAMS+=("$p"); done
for p in "${PROGRAMS[@]}"; do
    build "$p" plain "$CLANG" "$CLANGXX" "-O2"
    build "$p" drti "$BIN/drti-cc" "$BIN/drti-c++" "-O2"
    # IR PGO: instrumented build, one run of the workloads, merged profile, optimised build.
    build "$p" pgo-gen "$CLANG" "$CLANGXX" "-O2 -fprofile-generate"
    prof=$OUT/profiles/$p
    train_stamp=$( { cat "$OUT/pgo-gen/$p/.stamp"; grep "^$p	" "$SPEC"; cat "$HERE"/*.lua; } | sha256sum | cut -c1-16)
    if [ ! -s "$prof.profdata" ] || [ "$(cat "$prof.stamp" 2>/dev/null)" != "$train_stamp" ]; then
        rm -rf "$prof" "$prof.stamp"
        mkdir -p "$prof"
        python3 "$HERE/run.py" train "$SPEC" "$p" "$OUT/pgo-gen" "$prof" || die "PGO training of $p failed"
        llvm-profdata-19 merge -o "$prof.profdata" "$prof"/*.profraw || die "llvm-profdata-19 merge for $p failed"
        echo "$train_stamp" > "$prof.stamp"
    fi
    build "$p" pgo "$CLANG" "$CLANGXX" "-O2 -fprofile-use=$prof.profdata"
done

# ------------------------------------------------------------------ run
log "running $(wc -l < "$SPEC") workload(s) x 4 variants x $ROUNDS round(s); load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
python3 "$HERE/run.py" bench "$SPEC" "$OUT" "$ROUNDS" "$BIN/libdrti_agent.so" | tee "$OUT/table.md" || rc=$?
exit "$rc"
