#!/usr/bin/env bash
# Installs a build into a temporary prefix and builds clients against the
# installed files only, as a user of the package would:
#   - tests/consumer/consumer.c with the installed headers, as C11 and as
#     C++11, with -O2 -Wall -Wextra -Werror and pkg-config --cflags;
#   - tests/consumer/consumer_shared.c linked with pkg-config --libs, run with
#     LD_LIBRARY_PATH pointing at the installed libarl.so;
#   - tests/consumer/CMakeLists.txt through find_package(arl CONFIG).
# Every program must run and exit 0.
#
#   install-consumer.sh BUILD_DIR VERSION CC CXX [SANITIZER_FLAGS]
# SANITIZER_FLAGS, space-separated, are the -fsanitize flags the build used:
# a client of a sanitized libarl.so must load the same sanitizer runtime.
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
	echo "usage: $0 BUILD_DIR VERSION CC CXX [SANITIZER_FLAGS]" >&2
	exit 2
fi
build=$1 version=$2 cc=$3 cxx=$4
read -r -a sanitize <<<"${5:-}"
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/consumer" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/arl-install-consumer.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
# -O2 as most builds use: some warnings, -Wmaybe-uninitialized among them,
# need the optimizer to see through arl.h's inline functions.
warnings=(-O2 -Wall -Wextra -Werror)

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# Prints the one installed file of that name, or fails.
installed() {
	local found
	found=$(find "$prefix" -name "$1" \( -type f -o -type l \))
	[ -n "$found" ] || fail "cmake --install did not install $1"
	[ "$(wc -l <<<"$found")" -eq 1 ] || fail "cmake --install installed $1 more than once: $found"
	echo "$found"
}

echo "== cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
	{ cat "$work/install.log" >&2; fail "cmake --install failed"; }
[ -f "$prefix/include/arl.h" ] || fail "include/arl.h is not installed"
[ -f "$prefix/include/arl/stream.h" ] || fail "include/arl/stream.h is not installed"
installed arld >/dev/null
installed arlctl >/dev/null
installed libarl.so >/dev/null
installed "libarl.so.$version" >/dev/null
installed arlConfig.cmake >/dev/null
installed arlConfigVersion.cmake >/dev/null
pc_file=$(installed arl.pc)
libdir=$(dirname "$(dirname "$pc_file")")
soname=$(objdump -p "$libdir/libarl.so" | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = libarl.so.0 ] || fail "SONAME of the installed libarl.so is '$soname', expected libarl.so.0"

export PKG_CONFIG_PATH=$libdir/pkgconfig
pc_version=$(pkg-config --modversion arl)
[ "$pc_version" = "$version" ] || fail "pkg-config --modversion arl is $pc_version, expected $version"
read -r -a cflags <<<"$(pkg-config --cflags arl)"
read -r -a libs <<<"$(pkg-config --libs arl)"
echo "pkg-config: --cflags ${cflags[*]}; --libs ${libs[*]}"
[[ " ${cflags[*]} " == *" -I$prefix/"* ]] ||
	fail "pkg-config --cflags arl does not point into $prefix: ${cflags[*]}"

echo "== consumer.c as C11"
"$cc" -std=c11 -D_GNU_SOURCE "${warnings[@]}" "${sanitize[@]}" "${cflags[@]}" \
	"$source_dir/consumer.c" -o "$work/consumer-c11"
"$work/consumer-c11"

echo "== consumer.c as C++11"
"$cxx" -std=c++11 "${warnings[@]}" "${sanitize[@]}" "${cflags[@]}" \
	-x c++ "$source_dir/consumer.c" -x none -o "$work/consumer-cxx11"
"$work/consumer-cxx11"

echo "== consumer_shared.c linked with libarl.so"
# --no-as-needed: the program makes no direct call into the library, which
# a toolchain that defaults to --as-needed would then leave out.
"$cc" -std=c11 -D_GNU_SOURCE "${warnings[@]}" "${sanitize[@]}" "${cflags[@]}" \
	"$source_dir/consumer_shared.c" -o "$work/consumer-shared" \
	-Wl,--no-as-needed "${libs[@]}" -ldl
objdump -p "$work/consumer-shared" | grep -q 'NEEDED *libarl\.so\.0$' ||
	fail "consumer-shared does not list libarl.so.0 as NEEDED"
LD_LIBRARY_PATH=$libdir "$work/consumer-shared" | tee "$work/shared.out"
grep -q "calling $libdir/libarl.so.0" "$work/shared.out" ||
	fail "consumer-shared did not call the installed $libdir/libarl.so.0"

echo "== find_package(arl $version EXACT CONFIG) in a CMake project"
sanitize_text="${sanitize[*]}"
cmake -S "$source_dir" -B "$work/cmake-build" \
	-DCMAKE_PREFIX_PATH="$prefix" -DARL_EXPECTED_VERSION="$version" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$sanitize_text" \
	-DCMAKE_EXE_LINKER_FLAGS="$sanitize_text" >"$work/cmake.log" ||
	{ cat "$work/cmake.log" >&2; fail "configuring tests/consumer failed"; }
cmake --build "$work/cmake-build" >"$work/build.log" ||
	{ cat "$work/build.log" >&2; fail "building tests/consumer failed"; }
"$work/cmake-build/consumer"
# CMake sets the build RPATH to the imported library's directory.
"$work/cmake-build/consumer_shared" | tee "$work/cmake-shared.out"
grep -q "calling $libdir/libarl.so.0" "$work/cmake-shared.out" ||
	fail "the CMake consumer_shared did not call the installed $libdir/libarl.so.0"

echo "install_consumer: every client built and ran against the installed files"
