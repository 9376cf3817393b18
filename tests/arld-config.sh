#!/usr/bin/env bash
# arld's configuration: --check-config accepts a valid file and rejects bad
# ones with a message that names the value; a real arld creates account
# buckets before the buckets that charge them, and arlctl shows the links.
# Usage: arld-config.sh BUILD_DIR
set -euo pipefail

build=$1
arld="$build/src/arld"
arlctl="$build/tools/arlctl"
export ARL_SHM="/arl-test-config-$$"
work=$(mktemp -d)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -f "/dev/shm$ARL_SHM"
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# rejects NAME TEXT-IN-MESSAGE: the file $work/NAME.ini must be refused.
rejects() {
	if "$arld" --check-config "$work/$1.ini" >"$work/out" 2>&1; then
		fail "$1 was accepted"
	fi
	grep -q -- "$2" "$work/out" || fail "$1: message lacks '$2': $(cat "$work/out")"
}

# The model bucket comes first in the file and charges the org bucket.
cat >"$work/good.ini" <<INI
[arld]
segment = $ARL_SHM
sweep_interval = 100ms
[bucket:gpt]
provider = openai
account = org
tokens_per_minute = 30000
[bucket:org]
tokens_per_minute = 90000
[bucket:probe]
provider = anthropic
discover = yes
requests_per_minute = 50
INI
"$arld" --check-config "$work/good.ini" >"$work/out" 2>&1 || fail "good.ini: $(cat "$work/out")"
grep -q 'valid' "$work/out" || fail "good.ini: no 'valid' in $(cat "$work/out")"

printf '[bucket:a]\nprovider = openia\ntokens_per_minute = 10\n' >"$work/provider.ini"
rejects provider "openia"
printf '[bucket:a]\naccount = nowhere\ntokens_per_minute = 10\n' >"$work/account.ini"
rejects account "nowhere"
printf '[bucket:a]\naccount = b\ntokens_per_minute = 10\n[bucket:b]\naccount = a\ntokens_per_minute = 10\n' \
	>"$work/cycle.ini"
rejects cycle "cycle"
printf '[bucket:a]\ndiscover = maybe\ntokens_per_minute = 10\n' >"$work/discover.ini"
rejects discover "maybe"

# A real arld creates org before gpt, so the link holds.
"$arld" --config "$work/good.ini" --metrics off 2>"$work/arld.log" &
pid=$!
for _ in $(seq 1 3000); do
	"$arlctl" wait-sweep --timeout 1 >/dev/null 2>&1 && break
	sleep 0.01
done
json=$("$arlctl" buckets --json)
[ "$(jq -r '.[] | select(.name == "gpt") | .account' <<<"$json")" = org ] ||
	fail "gpt has no account org: $json"
[ "$(jq -r '.[] | select(.name == "gpt") | .provider' <<<"$json")" = openai ] ||
	fail "gpt has no provider openai: $json"
[ "$(jq -r '.[] | select(.name == "probe") | .discover' <<<"$json")" = true ] ||
	fail "probe does not discover: $json"

# arlctl run reserves on the whole chain: the account is charged too.
"$arlctl" run --bucket gpt --tokens 700 -- true || fail "arlctl run on gpt failed"
used=$("$arlctl" buckets --json | jq '.[] | select(.name == "org") | .granted_tokens')
[ "$used" = 700 ] || fail "org was charged $used tokens, expected 700"
# Removing the account leaves gpt linked to nothing that exists: status
# warns, and run says how to relink. A SIGHUP recreates org from the file
# and relinks gpt to it.
"$arlctl" remove-bucket org >/dev/null || fail "remove-bucket org failed"
"$arlctl" status --json | jq -e '.warnings | any(test("bucket gpt charges an account"))' \
	>/dev/null || fail "status does not warn about gpt's removed account"
if "$arlctl" run --bucket gpt --tokens 10 -- true 2>"$work/run.err"; then
	fail "run on gpt succeeded with its account removed"
fi
grep -q 'account=NAME' "$work/run.err" || fail "run does not say how to relink: $(cat "$work/run.err")"
kill -HUP "$pid"
for _ in $(seq 1 3000); do
	[ "$("$arlctl" buckets --json | jq -r '.[] | select(.name == "gpt") | .account')" = org ] && break
	sleep 0.01
done
[ "$("$arlctl" buckets --json | jq -r '.[] | select(.name == "gpt") | .account')" = org ] ||
	fail "SIGHUP did not relink gpt to the recreated org"
"$arlctl" run --bucket gpt --tokens 10 -- true || fail "run on gpt failed after the relink"

# A drain removes the segment, and arld, with nothing left to supervise,
# stops on its own with status 0.
"$arlctl" drain --timeout 5s >/dev/null || fail "arlctl drain failed"
for _ in $(seq 1 3000); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.01
done
if kill -0 "$pid" 2>/dev/null; then
	fail "arld still runs after the drain removed its segment"
fi
wait "$pid" || fail "arld exited with status $? after the drain"
pid=
grep -q 'drained and removed' "$work/arld.log" || fail "arld did not log the drain: $(cat "$work/arld.log")"
echo "arld-config: passed"
