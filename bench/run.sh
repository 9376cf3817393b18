#!/usr/bin/env bash
# Installs the Debian packages, builds arl with RelWithDebInfo and runs
# bench_compare: arl beside a robust mutex, flock() and Redis with Lua, then
# waiting, streaming and the sweep. Takes under three minutes on 2 cores.
# Arguments go to bench_compare (for example --json results.json, --quick).
#   ARL_BENCH_BUILD_DIR  build directory (default: build-bench/ in the
#                        source tree)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${ARL_BENCH_BUILD_DIR:-$root/build-bench}

"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target bench_compare >&2
exec "$build_dir/bench/bench_compare" "$@"
