#!/usr/bin/env bash
# arlctl run and processes against a real arld. The command's output passes
# through and its exit status comes back (a code, a signal, a command that
# cannot run). Every path releases: a stream with usage refunds, other
# endings keep the estimate, and an exec failure cancels.
# Usage: arlctl-run.sh BUILD_DIR
set -euo pipefail

build=$1
arld="$build/src/arld"
arlctl="$build/tools/arlctl"
export ARL_SHM="/arl-test-run-$$"
work=$(mktemp -d)
trap 'kill "$arld_pid" 2>/dev/null; wait 2>/dev/null; rm -f "/dev/shm$ARL_SHM"; rm -rf "$work"' EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

field() { # field NAME: a counter of bucket "default"
	"$arlctl" buckets --json | jq -r --arg f "$1" '.[] | select(.name == "default") | .[$f]'
}

"$arld" --metrics off 2>"$work/arld.log" &
arld_pid=$!
for _ in $(seq 100); do "$arlctl" status >/dev/null 2>&1 && break; sleep 0.05; done

# A stream with usage: passes through and refunds 100 - 30 = 70.
printf 'data: {"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}\n\ndata: [DONE]\n\n' >"$work/stream.sse"
out=$("$arlctl" run --bucket default --tokens 100 --sse -- cat "$work/stream.sse")
[ "$out" = "$(cat "$work/stream.sse")" ] || fail "output did not pass through unchanged"
[ "$(field refunded_tokens)" = 70 ] || fail "refund after a stream with usage: $(field refunded_tokens)"

# Exit codes pass through; unknown usage keeps the estimate.
set +e
"$arlctl" run --bucket default --tokens 50 -- sh -c 'exit 3'
[ $? = 3 ] || fail "exit code 3 did not pass through"
"$arlctl" run --bucket default --tokens 50 -- sh -c 'kill -9 $$'
[ $? = 137 ] || fail "death by SIGKILL did not give 137"
"$arlctl" run --bucket default --tokens 50 -- /nonexistent/command 2>/dev/null
[ $? = 127 ] || fail "a command that cannot run did not give 127"
"$arlctl" run --bucket default --tokens 100000000 -- true 2>/dev/null
[ $? = 1 ] || fail "a request above the burst did not fail with 1"
"$arlctl" run --tokens 1 -- true 2>/dev/null
[ $? = 2 ] || fail "a missing --bucket did not fail with 2"
set -e

[ "$(field fallback_releases)" = 2 ] || fail "fallback releases: $(field fallback_releases)"
[ "$(field canceled)" = 1 ] || fail "the exec failure was not canceled: $(field canceled)"
[ "$(field inflight)" = 0 ] || fail "in flight after every run: $(field inflight)"
[ "$("$arlctl" reservations --json | jq length)" = 0 ] || fail "reservations left behind"
"$arlctl" processes --json | jq -e 'type == "array"' >/dev/null || fail "processes --json"
echo "arlctl run: all checks passed"
