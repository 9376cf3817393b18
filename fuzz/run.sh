#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan, UBSan) and runs it.
#
# Usage: fuzz/run.sh TARGET|all [SECONDS] [LIBFUZZER-OPTION]...
#   TARGET   stream, segment, or headers (when include/arl/headers.h exists);
#            all runs each target for SECONDS
#   SECONDS  how long to fuzz each target (default 60); 0 runs the corpus once
#
# Environment:
#   ARL_FUZZ_DIR   build and corpus directory (default build-fuzz/ in the
#                  source tree); the corpus grows there from run to run
#   ARL_CASES_DIR  cases directory whose streams/ folder seeds the stream
#                  target (default: shared/cases beside the checkout, if any)
#   ARL_FUZZ_JOBS  fuzzing processes per target (default 1; libFuzzer -fork)
#
# Prints the inputs run (execs) per target. Exits non-zero when a target
# crashes, hangs or trips a sanitizer; the input is saved under
# $ARL_FUZZ_DIR/artifacts/TARGET/, and fuzz/run.sh TARGET 0 FILE replays it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${ARL_FUZZ_DIR:-$root/build-fuzz}
cases=${ARL_CASES_DIR:-$root/../shared/cases}
jobs=${ARL_FUZZ_JOBS:-1}
cc=${CC:-clang}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	exit "$1"
}

[ $# -ge 1 ] || usage 2
[ "$1" = -h ] || [ "$1" = --help ] && usage 0
target=$1
seconds=${2:-60}
shift $(($# >= 2 ? 2 : 1))
case $seconds in
'' | *[!0-9]*)
	echo "fuzz/run.sh: SECONDS must be a whole number, not $seconds" >&2
	exit 2
	;;
esac

targets() {
	printf "%s\n" stream segment
	[ -f "$root/include/arl/headers.h" ] && echo headers
	return 0
}

# Compiles fuzz/fuzz_TARGET.c with the sources it needs.
build() {
	local t=$1 sources=("$root/fuzz/fuzz_$1.c")

	[ "$t" = segment ] && sources+=("$root/src/sweep.c")
	mkdir -p "$dir"
	"$cc" -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
		-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
		-Wall -Wextra -Werror -I"$root/include" -I"$root/src" \
		"${sources[@]}" -o "$dir/fuzz_$t" -lpthread
}

# Fills $dir/seeds/TARGET afresh: the target's own seeds and, for the
# stream target, each recorded stream behind a control prefix.
make_seeds() {
	local t=$1 seeds=$dir/seeds/$1 f

	rm -rf "$seeds"
	mkdir -p "$seeds"
	if [ -d "$root/fuzz/seeds/$t" ]; then cp "$root/fuzz/seeds/$t"/. "$seeds"/ -r; fi
	case $t in
	stream)
		# Byte 0 selects SSE (0) or NDJSON (1); byte 1 = 0: no chunk lengths.
		if [ -d "$cases/streams" ]; then
			for f in "$cases/streams"/*.sse; do
				[ -f "$f" ] && { printf '\0\0'; cat "$f"; } >"$seeds/case-$(basename "$f")"
			done
			for f in "$cases/streams"/*.ndjson; do
				[ -f "$f" ] && { printf '\1\0'; cat "$f"; } >"$seeds/case-$(basename "$f")"
			done
		fi
		;;
	segment)
		ARL_FUZZ_WRITE_SEEDS=$seeds "$dir/fuzz_segment" -runs=0 >/dev/null 2>&1
		;;
	headers)
		if [ -f "$cases/headers.md" ]; then
			# Each fenced block of the samples is one response head.
			awk -v out="$seeds/case-head-" '
				/^```/ { if (inside) { close(file); inside = 0 } else { n++; file = out n; inside = 1; printf "" > file } next }
				inside { print > file }' "$cases/headers.md"
		fi
		;;
	esac
}

run() {
	local t=$1 corpus=$dir/corpus/$1 artifacts=$dir/artifacts/$1/ log=$dir/fuzz-$1.log
	local status=0 execs

	shift
	build "$t"
	make_seeds "$t"
	mkdir -p "$corpus" "$artifacts"
	echo "== fuzz $t: ${seconds} s, corpus $corpus"
	if [ "$seconds" -eq 0 ] && [ $# -gt 0 ]; then
		# Replay the given inputs only.
		"$dir/fuzz_$t" "$@" >"$log" 2>&1 || status=$?
	elif [ "$seconds" -eq 0 ]; then
		"$dir/fuzz_$t" -runs=0 "$corpus" "$dir/seeds/$t" >"$log" 2>&1 || status=$?
	else
		local parallel=()

		[ "$jobs" -gt 1 ] && parallel=(-fork="$jobs")
		"$dir/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
			-max_len=65536 -print_final_stats=1 "${parallel[@]}" \
			-artifact_prefix="$artifacts" "$@" "$corpus" "$dir/seeds/$t" >"$log" 2>&1 ||
			status=$?
	fi
	# The final statistics give the count; a replay prints none.
	execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+|Done [0-9]+ runs' "$log" |
		grep -Eo '[0-9]+' | sort -n | tail -1 || true)
	if [ "$status" -ne 0 ]; then
		tail -n 60 "$log" >&2
		echo "== fuzz $t: FAILED (status $status) after ${execs:-0} inputs; log $log" >&2
		return "$status"
	fi
	echo "== fuzz $t: ${execs:-0} inputs, no failure; log $log"
}

if [ "$target" = all ]; then
	for t in $(targets); do
		run "$t" "$@"
	done
else
	case " $(targets | tr '\n' ' ') " in
	*" $target "*) ;;
	*)
		echo "fuzz/run.sh: unknown target $target; targets: $(targets | tr '\n' ' ')" >&2
		exit 2
		;;
	esac
	run "$target" "$@"
fi
