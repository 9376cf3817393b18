#!/usr/bin/env bash
# The arl end-to-end demo. Several worker processes stream chat completions
# from a mock OpenAI-compatible provider on 127.0.0.1 that enforces a quota,
# sharing that quota through one arl bucket; arld sweeps the segment; one
# worker is killed with SIGKILL mid-stream. The summary compares arl's
# accounting with the provider's own count and fails (exit 1) if the provider
# ever answered 429 or a reservation was left behind.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
duration=30
workers=6
rpm=300
tpm=20000
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
"$mock" --rpm "$rpm" --tpm "$tpm" --port-file "$work/port" --chunk-delay-us 20000 \
	>"$work/provider.json" 2>"$work/provider.log" &
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
url="http://127.0.0.1:$(cat "$work/port")/v1/chat/completions"

echo "arl demo: $workers workers share $rpm requests and $tpm tokens per minute for ${duration} s"
echo "          (provider on ${url%/v1/*}, segment $segment)"

# 3. The workers.
worker_pids=()
for i in $(seq "$workers"); do
	"$worker" --segment "$segment" --bucket demo --url "$url" --duration "$duration" \
		--seed "$i" >"$work/worker-$i.json" 2>"$work/worker-$i.log" &
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

# 6. Collect arl's view, the provider's view and the workers' own totals.
"$arlctl" -s "$segment" buckets --json >"$work/buckets.json"
"$arlctl" -s "$segment" reservations --json >"$work/reservations.json"
curl -fsS "${url%/v1/*}/stats" >"$work/provider-stats.json"
provider_seconds=$((SECONDS - provider_started + 1)) # rounded up
cat "$work"/worker-*.json | jq -s '.' >"$work/workers.json"

# One line of shell assignments per view, read with jq.
eval "$(jq -r '.[] | select(.name == "demo") |
	"granted=\(.granted) reserved=\(.granted_tokens) refunded=\(.refunded_tokens) " +
	"overage=\(.overage_tokens) fallback=\(.fallback_tokens) rejected=\(.rejected) " +
	"waited_ns=\(.waited_ns) reclaimed_dead=\(.reclaimed_dead) " +
	"reclaimed_idle=\(.reclaimed_idle) inflight=\(.inflight)"' "$work/buckets.json")"
eval "$(jq -r '"admitted=\(.requests_admitted) limited=\(.requests_rate_limited) " +
	"charged=\(.tokens_charged) cut=\(.streams_cut) " +
	"negative=\(.tokens_bucket_negative_charges)"' "$work/provider-stats.json")"
left=$(jq 'length' "$work/reservations.json")
seen_429=$(jq -s 'map(.http_429) | add // 0' "$work"/worker-*.json)
used=$((reserved - refunded + overage))

printf '\n%-18s %12s %12s\n' "" "arl" "provider"
printf '%-18s %12s %12s\n' "requests" "$granted" "$admitted"
printf '%-18s %12s %12s\n' "tokens used" "$used" "$charged"
printf '%-18s %12s\n' "tokens reserved" "$reserved"
printf '%-18s %12s\n' "tokens refunded" "$refunded"
printf '%-18s %12s %12s\n' "429s" "$seen_429" "$limited"
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

failures=()
[ "$limited" = 0 ] || failures+=("the provider answered $limited requests with 429")
[ "$seen_429" = 0 ] || failures+=("the workers received $seen_429 responses with status 429")
[ "$negative" = 0 ] || failures+=("the provider's token bucket went negative $negative times")
[ "$left" = 0 ] || failures+=("$left reservations were left behind")
[ "$inflight" = 0 ] || failures+=("$inflight in-flight slots were left taken")
[ "$reclaimed_dead" -ge 1 ] || failures+=("arld did not reclaim the killed worker's reservation")

if [ ${#failures[@]} -eq 0 ]; then
	echo "PASS: the workers never exceeded the provider's quota (0 over-quota 429s),"
	echo "      the killed worker's reservation was reclaimed, and none was left behind."
	exit 0
fi
for failure in "${failures[@]}"; do echo "FAIL: $failure" >&2; done
echo "logs kept in $work" >&2
trap - EXIT
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
rm -f "/dev/shm$segment"
exit 1
