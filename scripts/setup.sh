#!/usr/bin/env bash
# Installs what drti needs to build on Debian 12, only if it is missing (idempotent).
# Required: clang-19, llvm-19-dev, libpolly-19-dev, libzstd-dev, zlib1g-dev.
# Optional: gdb (tests/tests/environment.rs checks backtraces through JIT'd code; that test
# is reported as ignored without it); cmake and pip (`make bench-real` builds zstd with
# CMake and downloads Box2D from PyPI). Installed when we can (root or sudo), never fatal.
set -euo pipefail
need=()
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v llvm-config-19 >/dev/null 2>&1 || need+=(llvm-19-dev)
[ -e /usr/lib/llvm-19/lib/libPolly.a ] || need+=(libpolly-19-dev)
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
# LLVM is linked statically (it loads in ~9 ms instead of ~22 ms); its system libraries:
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
want=()
command -v gdb >/dev/null 2>&1 || want+=(gdb)
[ -x /usr/bin/time ] || want+=(time)
command -v cmake >/dev/null 2>&1 || want+=(cmake)
python3 -m pip --version >/dev/null 2>&1 || want+=(python3-pip)

sudo=""
can_install=1
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo=sudo; else can_install=0; fi
fi
apt_install() {
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

if [ ${#need[@]} -eq 0 ]; then
  echo "setup: clang-19, llvm-19-dev, libpolly-19-dev, libzstd-dev, zlib1g-dev present"
else
  [ $can_install -eq 1 ] || { echo "setup: need root or sudo to install ${need[*]}" >&2; exit 1; }
  echo "setup: installing ${need[*]} ${want[*]} (apt-get)"
  apt_install "${need[@]}" "${want[@]}"
  echo "setup: installed ${need[*]} ${want[*]}"
  want=()
fi
if [ ${#want[@]} -gt 0 ]; then
  if [ $can_install -eq 1 ] && command -v apt-get >/dev/null 2>&1 && apt_install "${want[@]}"; then
    echo "setup: installed ${want[*]} (optional, for tests)"
  else
    echo "setup: could not install ${want[*]} (optional): the tests that need it report themselves ignored"
  fi
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
