#!/usr/bin/env bash
# build.sh - build the drti demo programs.
#
# Usage: demo/build.sh OUTDIR CC CXX [extra flags...]
#   e.g. demo/build.sh /tmp/demo-O2 clang-19 clang++-19 -O2
#        demo/build.sh /tmp/demo-drti target/release/drti-cc target/release/drti-c++ -O2
#
# The extra flags go to every compile and link step (after the defaults, so
# they can override them).  Each program is compiled (-c) and linked in two
# separate steps, so compiler wrappers see ordinary compile and link commands.
# Output in OUTDIR: kernel, plugin_host, plugin_twice.so, plugin_square.so,
# virtual, sort, counter, threads, exception and the oracle variants
# kernel-oracle, plugin_host-oracle, virtual-oracle, sort-oracle
# (see demo/README.md).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 OUTDIR CC CXX [extra flags...]" >&2
    exit 2
fi
OUT=$1
CC=$2
CXX=$3
shift 3
EXTRA=("$@")

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT/obj"
OUT=$(cd "$OUT" && pwd)
OBJ=$OUT/obj

# Link-only extra flags such as -pie also reach the compile steps: do not warn.
CFLAGS=(-std=c11 -Wall -Wextra -Wno-unused-command-line-argument)
CXXFLAGS=(-std=c++17 -Wall -Wextra -Wno-unused-command-line-argument)

run() {
    echo "+ $*"
    "$@"
}

# c_prog NAME SOURCE [flags...] [-- link flags...]
c_prog() {
    local name=$1 src=$2
    shift 2
    local cflags=() lflags=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do cflags+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    lflags=("$@")
    echo "== $name"
    run "$CC" "${CFLAGS[@]}" "${cflags[@]}" "${EXTRA[@]}" -c "$SRC/$src" -o "$OBJ/$name.o"
    run "$CC" "${CFLAGS[@]}" "${cflags[@]}" "${EXTRA[@]}" "$OBJ/$name.o" -o "$OUT/$name" "${lflags[@]}"
}

cxx_prog() {
    local name=$1 src=$2
    shift 2
    echo "== $name"
    run "$CXX" "${CXXFLAGS[@]}" "$@" "${EXTRA[@]}" -c "$SRC/$src" -o "$OBJ/$name.o"
    run "$CXX" "${CXXFLAGS[@]}" "$@" "${EXTRA[@]}" "$OBJ/$name.o" -o "$OUT/$name"
}

plugin() {
    local name=$1
    echo "== $name.so"
    run "$CC" "${CFLAGS[@]}" -fPIC "${EXTRA[@]}" -c "$SRC/$name.c" -o "$OBJ/$name.o"
    run "$CC" "${CFLAGS[@]}" -fPIC "${EXTRA[@]}" -shared "$OBJ/$name.o" -o "$OUT/$name.so"
}

c_prog kernel kernel.c
c_prog kernel-oracle kernel.c -DORACLE_FN=twice

plugin plugin_twice
plugin plugin_square
c_prog plugin_host plugin_host.c -- -ldl
c_prog plugin_host-oracle plugin_host.c '-DORACLE_PLUGIN="plugin_twice.c"'

cxx_prog virtual virtual.cpp
cxx_prog virtual-oracle virtual.cpp -DORACLE_TYPE=Square

c_prog sort sort.c
c_prog sort-oracle sort.c -DORACLE_CMP=cmp_asc

c_prog counter counter.c
c_prog threads threads.c -pthread -- -pthread
cxx_prog exception exception.cpp

echo "built demo programs in $OUT"
