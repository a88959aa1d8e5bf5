#!/usr/bin/env bash
# Installs what drti needs to build on Debian 12, only if it is missing (idempotent).
set -euo pipefail
need=()
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v llvm-config-19 >/dev/null 2>&1 || need+=(llvm-19-dev)
[ -e /usr/lib/llvm-19/lib/libPolly.a ] || need+=(libpolly-19-dev)
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
# LLVM is linked statically (it loads in ~9 ms instead of ~22 ms); its system libraries:
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -eq 0 ]; then
  echo "setup: clang-19, llvm-19-dev, libpolly-19-dev, libzstd-dev, zlib1g-dev present"
else
  echo "setup: installing ${need[*]} (apt-get)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install ${need[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq clang-19 llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev >/dev/null
  echo "setup: installed ${need[*]}"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
