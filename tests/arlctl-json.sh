#!/usr/bin/env bash
# The --json output of status, buckets, reservations, processes and
# top --once against a real arld. Every document must parse. Three
# "arlctl run" commands keep their reservations open, and the documents must
# show exactly those reservations, with their tokens, buckets and owners,
# and the bucket counters those runs produced.
# Usage: arlctl-json.sh BUILD_DIR
set -euo pipefail

build=$1
arld="$build/src/arld"
arlctl="$build/tools/arlctl"
export ARL_SHM="/arl-test-json-$$"
work=$(mktemp -d)
arld_pid=
cleanup() {
	[ -n "$arld_pid" ] && kill -9 "$arld_pid" 2>/dev/null
	# Opened read-write, a FIFO takes the line even when no holder reads.
	for f in "$work"/hold-*; do [ -p "$f" ] && echo 1<>"$f"; done
	wait 2>/dev/null
	rm -f "/dev/shm$ARL_SHM"
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# expect WHAT ACTUAL EXPECTED
expect() {
	[ "$2" = "$3" ] || fail "$1: got $2, expected $3"
}

cat >"$work/arld.ini" <<INI
[arld]
segment = $ARL_SHM
sweep_interval = 100ms
[bucket:work]
requests_per_minute = 100
tokens_per_minute = 10000
max_inflight = 8
[bucket:other]
tokens_per_hour = 5000
INI
"$arld" --config "$work/arld.ini" --metrics off 2>"$work/arld.log" &
arld_pid=$!
for _ in $(seq 200); do "$arlctl" buckets --json 2>/dev/null | jq -e 'length == 2' >/dev/null && break; sleep 0.05; done
"$arlctl" wait-sweep --timeout 60 || fail "no sweep from arld"

# Three open reservations: each "arlctl run" keeps one until a line is
# written to its FIFO.
hold() { # hold NAME BUCKET TOKENS: starts a holder; its pid goes to $work/NAME.pid
	mkfifo "$work/hold-$1"
	"$arlctl" run --bucket "$2" --tokens "$3" -- sh -c "read line <'$work/hold-$1'" &
	echo $! >"$work/$1.pid"
}
hold a work 700
hold b work 300
hold c other 1200
for _ in $(seq 600); do
	[ "$("$arlctl" reservations --json | jq length)" = 3 ] && break
	sleep 0.05
done
pid_a=$(cat "$work/a.pid")
pid_b=$(cat "$work/b.pid")
pid_c=$(cat "$work/c.pid")

# reservations: exactly the three, with their bucket, tokens and owner.
"$arlctl" reservations --json >"$work/res.json"
jq -e . "$work/res.json" >/dev/null || fail "reservations --json does not parse"
got=$(jq -c '[.[] | {bucket, owner_pid, input_tokens, output_tokens, state, request_id}] | sort_by(.input_tokens)' "$work/res.json")
want="[{\"bucket\":\"work\",\"owner_pid\":$pid_b,\"input_tokens\":300,\"output_tokens\":0,\"state\":\"committed\",\"request_id\":$pid_b},"
want+="{\"bucket\":\"work\",\"owner_pid\":$pid_a,\"input_tokens\":700,\"output_tokens\":0,\"state\":\"committed\",\"request_id\":$pid_a},"
want+="{\"bucket\":\"other\",\"owner_pid\":$pid_c,\"input_tokens\":1200,\"output_tokens\":0,\"state\":\"committed\",\"request_id\":$pid_c}]"
expect "reservations" "$got" "$want"
jq -e 'all(.[]; (.id | test("^[0-9]+:[0-9]+$")) and .age_ns >= .idle_ns and .chunks == 0)' \
	"$work/res.json" >/dev/null || fail "reservation ids, ages or chunks: $(cat "$work/res.json")"

# processes: the three holders, alive, one reservation each.
"$arlctl" processes --json >"$work/procs.json"
got=$(jq -c '[.[] | {pid, alive, reservations}] | sort_by(.pid)' "$work/procs.json")
want=$(printf '%s\n' "$pid_a" "$pid_b" "$pid_c" | sort -n |
	jq -sc '[.[] | {pid: ., alive: true, reservations: 1}]')
expect "processes" "$got" "$want"

# status: the supervisor and the table usage.
"$arlctl" status --json >"$work/status.json"
expect "status supervisor_pid" "$(jq .supervisor_pid "$work/status.json")" "$arld_pid"
expect "status supervisor_alive" "$(jq .supervisor_alive "$work/status.json")" true
expect "status draining" "$(jq .draining "$work/status.json")" false
expect "status live_reservations" "$(jq .live_reservations "$work/status.json")" 3
expect "status live_processes" "$(jq .live_processes "$work/status.json")" 3
expect "status segment" "$(jq -r .segment "$work/status.json")" "$ARL_SHM"
expect "status warnings" "$(jq -c .warnings "$work/status.json")" "[]"
jq -e '.sweep_count >= 1 and .reservation_capacity == 4096 and .bucket_capacity == 256 and
	.layout_version >= 1 and .test_clock == false' "$work/status.json" >/dev/null ||
	fail "status fields: $(cat "$work/status.json")"

# buckets: the counters of the three grants.
"$arlctl" buckets --json >"$work/buckets.json"
bucket() { jq -c --arg n "$1" ".[] | select(.name == \$n) | $2" "$work/buckets.json"; }
expect "work counters" "$(bucket work '[.granted, .granted_tokens, .inflight, .max_inflight, .rejected]')" "[2,1000,2,8,0]"
expect "other counters" "$(bucket other '[.granted, .granted_tokens, .inflight, .max_inflight]')" "[1,1200,1,0]"
expect "work limits" "$(bucket work '[.limits[] | [.unit, .amount, .window_ns, .burst]]')" \
	'[["requests",100,60000000000,100],["tokens",10000,60000000000,10000]]'
expect "other limits" "$(bucket other '[.limits[] | [.unit, .amount, .window_ns, .burst]]')" \
	'[["tokens",5000,3600000000000,5000]]'
bucket work '.limits[1].available >= 0 and .limits[1].available <= 10000' | grep -qx true ||
	fail "work tokens available: $(bucket work '.limits[1].available')"

# top --once --json: the same buckets and counters, the supervisor alive.
"$arlctl" top --once --json --interval 0 >"$work/top0.json"
jq -e '.interval_ns == null and .supervisor.alive == true and .draining == false and
	.live_reservations == 3 and all(.buckets[]; .granted_per_s == null)' \
	"$work/top0.json" >/dev/null || fail "top without an interval: $(cat "$work/top0.json")"
expect "top supervisor pid" "$(jq .supervisor.pid "$work/top0.json")" "$arld_pid"
for name in work other; do
	expect "top $name" \
		"$(jq -c --arg n $name '.buckets[] | select(.name == $n) | [.granted, .rejected, .inflight, .max_inflight, .waiters, [.limits[] | [.unit, .amount, .window_ns, .burst]]]' "$work/top0.json")" \
		"$(bucket $name '[.granted, .rejected, .inflight, .max_inflight, .waiters, [.limits[] | [.unit, .amount, .window_ns, .burst]]]')"
done
"$arlctl" --json top --once --interval 0.2 >"$work/top1.json"
jq -e '.interval_ns > 0 and (.buckets | length) == 2 and
	all(.buckets[]; (.granted_per_s | type) == "number" and .rejected_per_s >= 0)' \
	"$work/top1.json" >/dev/null || fail "top with an interval: $(cat "$work/top1.json")"
"$arlctl" top --once --interval 0 | grep -q '^work ' || fail "top --once text has no row for work"

# Release the holders: nothing is left, and each run's release is counted.
for name in a b c; do echo >"$work/hold-$name"; done
for name in a b c; do wait "$(cat "$work/$name.pid")" || fail "holder $name failed"; done
expect "reservations after release" "$("$arlctl" reservations --json)" "[]"
"$arlctl" buckets --json >"$work/buckets.json"
expect "work after release" "$(bucket work '[.inflight, .fallback_releases, .fallback_tokens]')" "[0,2,1000]"
expect "other after release" "$(bucket other '[.inflight, .fallback_releases, .fallback_tokens]')" "[0,1,1200]"
expect "live processes after release" "$("$arlctl" processes --json | jq '[.[] | select(.alive)] | length')" 0

# A killed arld keeps its pid in the segment, but shows as not alive.
kill -9 "$arld_pid"
wait "$arld_pid" 2>/dev/null || true
expect "status after SIGKILL" "$("$arlctl" status --json | jq -c '[.supervisor_pid, .supervisor_alive]')" "[$arld_pid,false]"
"$arlctl" status --json | jq -e '.warnings | any(test("no arld supervises"))' >/dev/null ||
	fail "status after SIGKILL does not warn that no arld supervises the segment"
expect "top after SIGKILL" "$("$arlctl" top --json --interval 0 | jq -c '[.supervisor.pid, .supervisor.alive]')" "[$arld_pid,false]"
arld_pid=
echo "arlctl --json: all checks passed"
