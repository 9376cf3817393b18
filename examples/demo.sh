#!/usr/bin/env bash
# The arl end-to-end demo. Several worker processes stream completions from a
# mock provider on 127.0.0.1 (OpenAI-style or Anthropic-style) that enforces a
# quota, sharing that quota through one arl bucket and applying the
# provider's rate-limit headers to it. arld sweeps the segment, one worker is
# killed with SIGKILL mid-stream, and halfway through, the provider responds
# to one request with an injected 429. The summary compares arl's accounting
# with the provider's own count and fails (exit 1) if the provider ever sent
# an over-quota 429, if any request reached it while the injected 429's block
# held, or if a reservation was left behind.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=30
workers=6
rpm=300
tpm=20000
style=openai
inject_at=""
retry_after=""
build_dir="$root/build"
install=1
build=1

usage() {
	cat <<USAGE
Usage: examples/demo.sh [OPTION]...
Install the Debian packages arl needs, build it, and run the end-to-end demo.

  --duration SECONDS  how long the workers start new requests (default 30)
  --workers N         worker processes, 2 to 64 (default 6)
  --rpm N             the quota's requests per minute (default 300)
  --tpm N             the quota's tokens per minute (default 20000)
  --style STYLE       the provider's API and headers: openai (Chat Completions,
                      x-ratelimit-*) or anthropic (Messages, anthropic-ratelimit-*)
                      (default openai)
  --inject-429-at S   seconds after the provider starts when it responds to one
                      request with 429 although the quota has room
                      (default: half the duration)
  --retry-after S     the injected 429's retry time in seconds (default 5, or
                      half the duration when that is shorter)
  --no-429            inject no 429
  --build-dir DIR     CMake build directory (default: build/ in the source tree)
  --no-install        skip the apt-get step
  --no-build          use the binaries already in the build directory
  --help              show this help
USAGE
}

die() {
	echo "demo: $*" >&2
	exit 2
}

while [ $# -gt 0 ]; do
	case "$1" in
	--duration) duration=${2:?}; shift 2 ;;
	--workers) workers=${2:?}; shift 2 ;;
	--rpm) rpm=${2:?}; shift 2 ;;
	--tpm) tpm=${2:?}; shift 2 ;;
	--style) style=${2:?}; shift 2 ;;
	--inject-429-at) inject_at=${2:?}; shift 2 ;;
	--retry-after) retry_after=${2:?}; shift 2 ;;
	--no-429) inject_at=none; shift ;;
	--build-dir) build_dir=${2:?}; shift 2 ;;
	--no-install) install=0; shift ;;
	--no-build) build=0; shift ;;
	--help) usage; exit 0 ;;
	*) die "unknown option $1; see --help" ;;
	esac
done
[[ $duration =~ ^[0-9]+$ && $duration -ge 2 ]] || die "--duration $duration: expected whole seconds, at least 2"
[[ $workers =~ ^[0-9]+$ && $workers -ge 2 && $workers -le 64 ]] || die "--workers $workers: expected 2 to 64"
[[ $rpm =~ ^[0-9]+$ && $rpm -ge 1 ]] || die "--rpm $rpm: expected a positive whole number"
[[ $tpm =~ ^[0-9]+$ && $tpm -ge 1000 ]] || die "--tpm $tpm: expected a whole number of at least 1000"
[[ $style = openai || $style = anthropic ]] || die "--style $style: expected openai or anthropic"
[ -n "$inject_at" ] || inject_at=$((duration / 2))
[ -n "$retry_after" ] || retry_after=$((duration / 2 < 5 ? duration / 2 : 5))
[[ $inject_at = none || ($inject_at =~ ^[0-9]+$ && $inject_at -lt $duration) ]] ||
	die "--inject-429-at $inject_at: expected whole seconds below the duration ($duration)"
[[ $retry_after =~ ^[0-9]+$ && $retry_after -ge 1 ]] ||
	die "--retry-after $retry_after: expected whole seconds, at least 1"

if [ "$install" = 1 ]; then
	"$root/scripts/install-deps.sh"
fi
if [ "$build" = 1 ]; then
	cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$build_dir" -j "$(nproc)" >/dev/null
fi

arld="$build_dir/src/arld"
arlctl="$build_dir/tools/arlctl"
mock="$build_dir/examples/arl-mock-provider"
worker="$build_dir/examples/arl-demo-worker"
for binary in "$arld" "$arlctl" "$mock" "$worker"; do
	[ -x "$binary" ] || die "$binary is missing; run without --no-build"
done

segment="/arl-demo-$$"
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -f "/dev/shm$segment"
	rm -rf "$work"
}
trap cleanup EXIT

# 1. The provider, enforcing the quota with its own token buckets.
# 20 ms between chunks makes a stream last about a second, like a real one.
inject_args=()
[ "$inject_at" = none ] || inject_args=(--inject-429-at "$inject_at" --retry-after "$retry_after")
"$mock" --style "$style" --rpm "$rpm" --tpm "$tpm" --port-file "$work/port" \
	--chunk-delay-us 20000 "${inject_args[@]}" >"$work/provider.json" 2>"$work/provider.log" &
provider_pid=$!
provider_started=$SECONDS
pids+=("$provider_pid")

# 2. arld with one bucket of the same quota.
cat >"$work/arld.ini" <<INI
[arld]
segment = $segment
sweep_interval = 1s
reservation_ttl = 300s

[bucket:demo]
requests_per_minute = $rpm
tokens_per_minute = $tpm
max_inflight = $workers
INI
"$arld" --config "$work/arld.ini" 2>"$work/arld.log" &
pids+=($!)

for _ in $(seq 100); do
	[ -s "$work/port" ] && "$arlctl" -s "$segment" status >/dev/null 2>&1 && break
	sleep 0.1
done
[ -s "$work/port" ] || die "the mock provider did not start; see $work/provider.log"
"$arlctl" -s "$segment" wait-sweep --timeout 10 >/dev/null || die "arld did not start"
base_url="http://127.0.0.1:$(cat "$work/port")"
if [ "$style" = anthropic ]; then
	url="$base_url/v1/messages"
else
	url="$base_url/v1/chat/completions"
fi

echo "arl demo: $workers workers share $rpm requests and $tpm tokens per minute for ${duration} s"
echo "          ($style-style provider on $base_url, segment $segment)"
if [ "$inject_at" != none ]; then
	echo "          the provider will respond to one request at ${inject_at} s with 429, retry after ${retry_after} s"
fi

# 3. The workers.
worker_pids=()
for i in $(seq "$workers"); do
	"$worker" --segment "$segment" --bucket demo --url "$url" --provider "$style" \
		--duration "$duration" --seed "$i" >"$work/worker-$i.json" 2>"$work/worker-$i.log" &
	worker_pids+=($!)
	pids+=($!)
done

# 4. Kill, with SIGKILL, a worker whose stream is under way: the first one
#    seen with a live reservation that has received chunks.
sleep $((duration / 3))
victim=""
victim_reservation=""
pid_list=$(IFS=,; echo "${worker_pids[*]}")
for _ in $(seq 400); do
	read -r victim victim_reservation < <("$arlctl" -s "$segment" reservations --json |
		jq -r --argjson pids "[$pid_list]" \
			'[.[] | select(.chunks > 0 and (.owner_pid as $p | $pids | index($p)))][0] //
			 empty | "\(.owner_pid) \(.id)"') || true
	[ -n "$victim" ] && break
	sleep 0.05
done
[ -n "$victim" ] || die "no worker was mid-stream within 20 s; see $work/provider.log"
# Braces around kill and wait keep bash's "Killed" job notice off the output.
{ kill -KILL "$victim" && wait "$victim"; } 2>/dev/null || true
echo "killed worker pid $victim with SIGKILL while it streamed under reservation $victim_reservation"

# 5. Let the others finish, then give arld two sweeps to reclaim.
for pid in "${worker_pids[@]}"; do
	[ "$pid" = "$victim" ] || wait "$pid" || true
done
"$arlctl" -s "$segment" wait-sweep 2 --timeout 30 >/dev/null || die "arld stopped sweeping"

# Sets shell variables that describe the injected 429, from the provider's
# request times in microseconds of CLOCK_MONOTONIC, the clock arl reads. The
# block starts when a worker has observed the 429, so a request granted before
# then was already on its way.
# NOTE: a worker stamps the grant time just after arl_reserve_wait() returns,
# so a request granted microseconds before the 429 was observed, but stamped
# after, would count as granted during the block.
analyze_injected_429() {
	eval "$(jq -rn --slurpfile stats "$work/provider-stats.json" \
		--slurpfile requests "$work/provider-requests.json" \
		--slurpfile workers "$work/workers.json" '
		$stats[0] as $s | $s.injected_429_at_us as $at |
		($s.injected_429_retry_after_ms * 1000) as $retry |
		([$workers[0][] | .pid as $pid | .blocks[] | . + {pid: $pid} |
		  select(.received_us >= $at)] | min_by(.received_us)) as $block |
		($block.observed_us // $at) as $observed |
		[$requests[0].requests[] | select((.injected | not) and .arrival_us > $at)] as $later |
		[$later[] | select(.arrival_us < $at + $retry)] as $window |
		[$window[] | select(.granted_at_us != null and .granted_at_us < $observed)] as $early |
		[$later[] | select(.granted_at_us == null or .granted_at_us >= $observed)] as $fresh |
		"inject_s=\(($at - $s.started_us) / 1e6) retry_ms=\($s.injected_429_retry_after_ms) " +
		"room=\(if $s.injected_429_fit then "although the quota had room for it" else
			"and the quota had no room for it either" end | @sh) " +
		"block_found=\(if $block then 1 else 0 end) block_pid=\($block.pid // 0) " +
		"block_us=\([($block.blocked_until_us // 0) - ($block.received_us // 0), 0] | max) " +
		"during=\(($window | length) - ($early | length)) in_flight=\($early | length) " +
		"next_us=\(($fresh | min_by(.arrival_us)) as $next |
			if $next then $next.arrival_us - $at else "none" end)"')"
}

# Prints what happened to the injected 429, as analyze_injected_429 found it.
print_injected_429() {
	printf 'Injected 429: at %.1f s the provider responded to a request with 429 and a\n' \
		"$inject_s"
	echo "retry time of $retry_ms ms, $room."
	if [ "$block_found" = 1 ] && [ "$block_us" -gt 0 ]; then
		printf 'Worker %s handed it to arl, which blocked the bucket for every worker\n' \
			"$block_pid"
		printf 'for %.3f s from the moment the 429 arrived.\n' \
			"$(awk -v us="$block_us" 'BEGIN {print us / 1e6}')"
	elif [ "$block_found" = 1 ]; then
		echo "Worker $block_pid handed it to arl, but the bucket was not blocked when the"
		echo "worker read it back."
	else
		echo "No surviving worker reported it (the killed worker may have received it),"
		echo "so the block is measured from the 429 itself."
	fi
	echo "Requests that reached the provider before the retry time: $during granted after"
	echo "the 429, and $in_flight granted before it was observed and already on their way."
	if [ "$next_us" = none ]; then
		echo "No request reached the provider after the 429: the run ended during the block."
	else
		printf 'The first request granted after the block arrived %.3f s after the 429.\n' \
			"$(awk -v us="$next_us" 'BEGIN {print us / 1e6}')"
	fi
	if [ "$arl_429s" = n/a ]; then
		echo "(arlctl buckets --json does not report the bucket's provider_429s count.)"
	fi
	echo
}

# 6. Collect arl's view, the provider's view and the workers' own totals.
"$arlctl" -s "$segment" buckets --json >"$work/buckets.json"
"$arlctl" -s "$segment" reservations --json >"$work/reservations.json"
curl -fsS "$base_url/stats" >"$work/provider-stats.json"
curl -fsS "$base_url/requests" >"$work/provider-requests.json"
provider_seconds=$((SECONDS - provider_started + 1)) # rounded up
cat "$work"/worker-*.json | jq -s '.' >"$work/workers.json"

# One line of shell assignments per view, read with jq.
eval "$(jq -r '.[] | select(.name == "demo") |
	"granted=\(.granted) reserved=\(.granted_tokens) refunded=\(.refunded_tokens) " +
	"overage=\(.overage_tokens) fallback=\(.fallback_tokens) rejected=\(.rejected) " +
	"waited_ns=\(.waited_ns) reclaimed_dead=\(.reclaimed_dead) " +
	"reclaimed_idle=\(.reclaimed_idle) inflight=\(.inflight) canceled=\(.canceled) " +
	"arl_429s=\(.provider_429s // "n/a")"' "$work/buckets.json")"
eval "$(jq -r '"admitted=\(.requests_admitted) limited=\(.requests_rate_limited) " +
	"charged=\(.tokens_charged) cut=\(.streams_cut) " +
	"negative=\(.tokens_bucket_negative_charges) injected=\(.injected_429s)"' \
	"$work/provider-stats.json")"
eval "$(jq -r '"seen_429=\(map(.http_429) | add // 0) " +
	"tokens_canceled=\(map(.tokens_canceled) | add // 0)"' "$work/workers.json")"
left=$(jq 'length' "$work/reservations.json")
# A reservation canceled after a 429 stays in arl's granted counts, but it used nothing.
used=$((reserved - tokens_canceled - refunded + overage))

block_found=0
[ "$injected" -lt 1 ] || analyze_injected_429

printf '\n%-18s %12s %12s\n' "" "arl" "provider"
printf '%-18s %12s %12s\n' "requests" "$((granted - canceled))" "$admitted"
printf '%-18s %12s %12s\n' "tokens used" "$used" "$charged"
printf '%-18s %12s\n' "tokens reserved" "$((reserved - tokens_canceled))"
printf '%-18s %12s\n' "tokens refunded" "$refunded"
printf '%-18s %12s %12s   (the workers received %s)\n' "429s" "$arl_429s" \
	"$((limited + injected))" "$seen_429"
printf '%-18s %12s %12s\n' "  over quota" "" "$limited"
printf '%-18s %12s %12s\n' "  injected" "" "$injected"
printf '%-18s %12s   (reserve tries refused; the workers waited %.1f s, summed)\n' "throttled" \
	"$rejected" "$(echo "$waited_ns" | awk '{print $1 / 1e9}')"
printf '%-18s %12s   (streams the provider saw end early)\n' "streams cut" "$cut"
printf '%-18s %12s   (owner died; %s idle), fallback kept %s tokens\n' "reclaims" \
	"$reclaimed_dead" "$reclaimed_idle" "$fallback"
printf '%-18s %12s   (and %s in flight)\n\n' "left behind" "$left" "$inflight"
# A continuous bucket of TPM per minute contains TPM at the start and refills
# TPM/60 per second, so over S seconds it can admit at most TPM + TPM*S/60.
quota_bound=$((tpm + tpm * provider_seconds / 60))
echo "The quota admits at most $quota_bound tokens in the provider's $provider_seconds s"
echo "(a full bucket of $tpm, then $tpm per minute); the provider charged $charged."
echo
if [ "$fallback" -gt 0 ]; then
	echo "arl counts more tokens used than the provider because the killed stream never"
	echo "reported its usage: arl keeps its whole reservation ($fallback tokens), while"
	echo "the provider charged only the tokens it really generated."
	echo
fi
[ "$injected" -lt 1 ] || print_injected_429

failures=()
[ "$limited" = 0 ] || failures+=("the provider sent $limited over-quota 429s")
[ "$seen_429" = $((limited + injected)) ] ||
	failures+=("the workers received $seen_429 responses with status 429, the provider sent $((limited + injected))")
[ "$negative" = 0 ] || failures+=("the provider's token bucket went negative $negative times")
[ "$left" = 0 ] || failures+=("$left reservations were left behind")
[ "$inflight" = 0 ] || failures+=("$inflight in-flight slots were left taken")
[ "$reclaimed_dead" -ge 1 ] || failures+=("arld did not reclaim the killed worker's reservation")
if [ "$inject_at" != none ]; then
	if [ "$injected" != 1 ]; then
		failures+=("the provider sent $injected injected 429s, expected 1 (no request at or after ${inject_at} s?)")
	else
		[ "$during" = 0 ] ||
			failures+=("$during requests granted after the 429 reached the provider before its retry time")
		[ "$block_found" = 0 ] || [ "$block_us" -ge $((retry_ms * 1000 - 1)) ] ||
			failures+=("arl blocked the bucket for ${block_us} us, less than the retry time of ${retry_ms} ms")
		[ "$arl_429s" = n/a ] || [ "$arl_429s" = "$seen_429" ] ||
			failures+=("arl's bucket counted $arl_429s provider 429s, the workers received $seen_429")
	fi
fi

if [ ${#failures[@]} -eq 0 ]; then
	echo "PASS: the workers never exceeded the provider's quota (0 over-quota 429s),"
	if [ "$inject_at" != none ]; then
		echo "      the injected 429 paused every worker until its retry time,"
	fi
	echo "      the killed worker's reservation was reclaimed, and none was left behind."
	exit 0
fi
for failure in "${failures[@]}"; do echo "FAIL: $failure" >&2; done
echo "logs kept in $work" >&2
trap - EXIT
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
rm -f "/dev/shm$segment"
exit 1
