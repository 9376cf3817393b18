#!/usr/bin/env bash
# Checks that libarl.so exports exactly the public functions of arl.h.
#   check-exports.sh CC HEADER MAP LIBRARY
# The public functions are those defined with ARL_API whose names do not
# start with arl_impl_. Fails when one of them is not exported with version
# node ARL_0.1, when libarl.map lists a name that is not one of them, or when
# the library exports any other symbol (an arl_impl_* helper in particular).
set -euo pipefail

if [ $# -ne 4 ]; then
	echo "usage: $0 CC HEADER MAP LIBRARY" >&2
	exit 2
fi
cc=$1 header=$2 map=$3 library=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Every function arl.h defines, from the preprocessed header: comments are
# gone, and ARL_API becomes a marker followed by the return type and the
# name, up to the opening parenthesis of the parameter list.
"$cc" -E -P -D_GNU_SOURCE -DARL_API=arl_check_exports_marker -x c "$header" |
	tr '\n' ' ' |
	grep -oE 'arl_check_exports_marker[^(]*\(' |
	sed -E 's/[[:space:]]*\($//; s/.*[^A-Za-z0-9_]//' |
	sort -u >"$work/defined"
grep -v '^arl_impl_' "$work/defined" >"$work/public" || true
if ! grep -qx arl_attach "$work/public"; then
	echo "FAIL: found no arl_attach among the ARL_API functions of $header;" \
		"the extraction in $0 no longer matches the header" >&2
	exit 1
fi

# Names in the map's global list, between "global:" and "local:", with the
# comments stripped by the preprocessor.
"$cc" -E -P -x c "$map" |
	awk '/global:/ { on = 1; next } /local:/ { on = 0 } on' |
	tr ';' '\n' | tr -d ' \t' | grep -v '^$' | sort -u >"$work/mapped"

# Exported symbols, as name@@version or name@version.
nm -D --defined-only "$library" | awk '$2 != "A" { print $3 }' | sort -u >"$work/exported"

failed=0
while read -r name; do
	if ! grep -qx "$name@@ARL_0.1" "$work/exported"; then
		echo "FAIL: $name is a public function of arl.h but $library does not" \
			"export it as $name@@ARL_0.1; add it to $map" >&2
		failed=1
	fi
done <"$work/public"
while read -r name; do
	if ! grep -qx "$name" "$work/public"; then
		echo "FAIL: $map lists $name, which is not a public function of arl.h" >&2
		failed=1
	fi
done <"$work/mapped"
while read -r symbol; do
	name=${symbol%%@*}
	if ! grep -qx "$name" "$work/public"; then
		echo "FAIL: $library exports $symbol, which is not a public function of arl.h" >&2
		failed=1
	fi
done <"$work/exported"

if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "libarl.so exports the $(wc -l <"$work/public") public functions of arl.h" \
	"and none of its $(grep -c '^arl_impl_' "$work/defined") arl_impl_* helpers"
