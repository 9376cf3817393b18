#!/usr/bin/env bash
# arlctl's admin commands against a real segment with no arld running:
# create-bucket, set-limits, remove-bucket, release of a reservation whose
# owner was killed, and drain (clean, at its deadline, and interrupted).
# Usage: arlctl-admin.sh BUILD_DIR
set -euo pipefail

build=$1
arld="$build/src/arld"
arlctl="$build/tools/arlctl"
export ARL_SHM="/arl-test-admin-$$"
work=$(mktemp -d)
cleanup() {
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

expect() { # expect WHAT ACTUAL EXPECTED
	[ "$2" = "$3" ] || fail "$1: got $2, expected $3"
}

status_of() { # status_of COMMAND...: prints the exit status
	set +e
	"$@" >"$work/out" 2>"$work/err"
	echo $?
	set -e
}

bucket() { # bucket NAME JQ: a field of a bucket
	"$arlctl" buckets --json | jq -c --arg n "$1" ".[] | select(.name == \$n) | $2"
}

hold() { # hold NAME BUCKET TOKENS: a reservation held until hold-NAME is written
	mkfifo "$work/hold-$1"
	"$arlctl" run --bucket "$2" --tokens "$3" -- sh -c "read line <'$work/hold-$1'" &
	echo $! >"$work/$1.pid"
}

wait_reservations() { # wait_reservations N
	for _ in $(seq 600); do
		[ "$("$arlctl" reservations --json | jq length)" = "$1" ] && return 0
		sleep 0.05
	done
	fail "never saw $1 live reservations"
}

# arld creates the segment and stops; everything below runs without it.
"$arld" --metrics off 2>"$work/arld.log" &
arld_pid=$!
for _ in $(seq 200); do "$arlctl" status >/dev/null 2>&1 && break; sleep 0.05; done
kill -TERM "$arld_pid"
wait "$arld_pid"
expect "supervisor" "$("$arlctl" status --json | jq .supervisor_pid)" 0

# create-bucket
expect "create" "$(status_of "$arlctl" create-bucket work requests_per_minute=100 tokens_per_minute=10000 tokens_per_minute_burst=12000 max_inflight=4 refund=no)" 0
expect "work config" "$(bucket work '[.max_inflight, .refund, [.limits[] | [.unit, .amount, .window_ns, .burst]]]')" \
	'[4,false,[["requests",100,60000000000,100],["tokens",10000,60000000000,12000]]]'
expect "create twice" "$(status_of "$arlctl" create-bucket work requests_per_minute=1)" 1
grep -q "set-limits" "$work/err" || fail "create twice does not name set-limits: $(cat "$work/err")"
expect "unknown key" "$(status_of "$arlctl" create-bucket bad tokens_per_fortnight=1)" 2
grep -q "tokens_per_fortnight" "$work/err" || fail "unknown key not named: $(cat "$work/err")"
expect "invalid value" "$(status_of "$arlctl" create-bucket bad tokens_per_minute=-5)" 2
expect "no limits" "$(status_of "$arlctl" create-bucket bad refund=no)" 2
expect "not a pair" "$(status_of "$arlctl" create-bucket bad tokens_per_minute)" 2
expect "long name" "$(status_of "$arlctl" create-bucket "$(printf 'x%.0s' $(seq 64))" requests_per_minute=1)" 2
expect "no bucket bad" "$(bucket bad .name)" ""

# set-limits: given keys change, the others keep their live values.
expect "set-limits" "$(status_of "$arlctl" set-limits work tokens_per_minute=20000 max_inflight=6)" 0
expect "work after set-limits" "$(bucket work '[.max_inflight, .refund, [.limits[] | [.amount, .burst]]]')" \
	'[6,false,[[100,100],[20000,12000]]]'
expect "new shape" "$(status_of "$arlctl" set-limits work tokens_per_hour=5)" 1
grep -q "remove-bucket" "$work/err" || fail "shape change does not name the fix: $(cat "$work/err")"
expect "set-limits missing" "$(status_of "$arlctl" set-limits nothere tokens_per_minute=5)" 1

# release: a reservation whose owner was killed, with no arld to reclaim it.
hold dead work 500
wait_reservations 1
id=$("$arlctl" reservations --json | jq -r '.[0].id')
kill -9 "$(cat "$work/dead.pid")"
wait "$(cat "$work/dead.pid")" 2>/dev/null || true
echo 1<>"$work/hold-dead" # ends the orphaned command
expect "still live" "$("$arlctl" reservations --json | jq length)" 1
expect "wrong generation" "$(status_of "$arlctl" release "${id%%:*}:999")" 1
expect "release" "$(status_of "$arlctl" release "$id")" 0
expect "released" "$("$arlctl" reservations --json | jq length)" 0
expect "release counters" "$(bucket work '[.inflight, .reclaimed_admin, .fallback_releases, .fallback_tokens]')" "[0,1,1,500]"
expect "release again" "$(status_of "$arlctl" release "$id")" 1
expect "release out of range" "$(status_of "$arlctl" release 4096)" 2
expect "release garbage" "$(status_of "$arlctl" release abc)" 2

# remove-bucket: a held reservation survives and is released normally.
hold keep work 100
wait_reservations 1
expect "remove" "$(status_of "$arlctl" remove-bucket work)" 0
expect "removed" "$(bucket work .name)" ""
expect "remove twice" "$(status_of "$arlctl" remove-bucket work)" 1
expect "run on removed" "$(status_of "$arlctl" run --bucket work --tokens 1 -- true)" 1
echo >"$work/hold-keep"
wait "$(cat "$work/keep.pid")" || fail "the holder on the removed bucket failed"
expect "after remove" "$("$arlctl" reservations --json | jq length)" 0
expect "recreate" "$(status_of "$arlctl" create-bucket work requests_per_minute=50)" 0

# drain, interrupted: undone, nothing removed.
hold int work 10
wait_reservations 1
"$arlctl" drain --timeout 60s >"$work/drain-int.out" 2>&1 &
drain_pid=$!
for _ in $(seq 600); do [ "$("$arlctl" status --json | jq .draining)" = true ] && break; sleep 0.05; done
expect "draining" "$("$arlctl" status --json | jq .draining)" true
expect "reserve while draining" "$(status_of "$arlctl" run --bucket work --tokens 1 -- true)" 1
kill -INT "$drain_pid"
set +e
wait "$drain_pid"
expect "interrupted drain" $? 130
set -e
expect "draining undone" "$("$arlctl" status --json | jq .draining)" false
[ -e "/dev/shm$ARL_SHM" ] || fail "an interrupted drain removed the segment"

# drain at its deadline: removed anyway, exit 3.
expect "drain with a live reservation" "$(status_of "$arlctl" drain --timeout 300ms)" 3
grep -q "still live" "$work/err" || fail "drain does not list what was live: $(cat "$work/err")"
[ ! -e "/dev/shm$ARL_SHM" ] || fail "drain at the deadline left the segment"
echo >"$work/hold-int"
wait "$(cat "$work/int.pid")" || fail "the holder during the drain failed"

# drain, clean: waits for the last release, then removes the segment.
"$arld" --metrics off 2>>"$work/arld.log" &
arld_pid=$!
for _ in $(seq 200); do "$arlctl" status >/dev/null 2>&1 && break; sleep 0.05; done
kill -TERM "$arld_pid"
wait "$arld_pid"
hold last default 10
wait_reservations 1
"$arlctl" drain --timeout 60s >"$work/drain.out" 2>&1 &
drain_pid=$!
for _ in $(seq 600); do [ "$("$arlctl" status --json | jq .draining)" = true ] && break; sleep 0.05; done
[ -e "/dev/shm$ARL_SHM" ] || fail "drain removed the segment before the last release"
echo >"$work/hold-last"
wait "$(cat "$work/last.pid")" || fail "the last holder failed"
set +e
wait "$drain_pid"
expect "clean drain" $? 0
set -e
[ ! -e "/dev/shm$ARL_SHM" ] || fail "a clean drain left the segment"
expect "bad timeout" "$(status_of "$arlctl" drain --timeout soon)" 2
echo "arlctl admin commands: all checks passed"
