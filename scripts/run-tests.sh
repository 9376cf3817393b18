#!/usr/bin/env bash
# Installs the Debian packages arl needs, builds it, and runs every test
# suite with ctest. Extra arguments go to ctest (for example -R stream).
#   ARL_BUILD_DIR  build directory (default: build/ in the source tree, or
#                  build-address/ or build-thread/ with ARL_SANITIZE)
#   ARL_WERROR     ON to treat compiler warnings as errors (CI sets it)
#   ARL_SANITIZE   address (ASan with UBSan) or thread (TSan) to build and
#                  test everything with those sanitizers
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${ARL_BUILD_DIR:-$root/build${ARL_SANITIZE:+-$ARL_SANITIZE}}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build_dir" -DARL_WERROR="${ARL_WERROR:-OFF}" \
	-DARL_SANITIZE="${ARL_SANITIZE:-}" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)" "$@"
