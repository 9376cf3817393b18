#!/usr/bin/env bash
# arlctl parse-headers: the JSON it prints for real provider heads, checked
# with jq, and its errors. Usage: parse-headers.sh BUILD_DIR
set -euo pipefail

arlctl="$1/tools/arlctl"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# parse PROVIDER: reads a head on standard input and prints arlctl's JSON.
parse() {
	"$arlctl" parse-headers --provider "$1"
}

# expect NAME JSON EXPECTED: JSON must equal EXPECTED, keys in any order.
expect() {
	jq -e --argjson want "$3" '. == $want' <<<"$2" >/dev/null ||
		fail "$1: got $2, expected $3"
}

null_limit='{"limit": null, "remaining": null, "reset_ms": null, "window": null}'

out=$(printf 'HTTP/1.1 200 OK\r\nx-ratelimit-limit-requests: 60\r\nx-ratelimit-limit-tokens: 150000\r\nx-ratelimit-remaining-requests: 59\r\nx-ratelimit-remaining-tokens: 149984\r\nx-ratelimit-reset-requests: 1s\r\nx-ratelimit-reset-tokens: 6m0s\r\n\r\n' | parse openai)
expect "openai sample" "$out" "{\"status\": 200, \"retry_after_ms\": null,
	\"requests\": {\"limit\": 60, \"remaining\": 59, \"reset_ms\": 1000, \"window\": \"minute\"},
	\"tokens\": {\"limit\": 150000, \"remaining\": 149984, \"reset_ms\": 360000, \"window\": \"minute\"},
	\"input_tokens\": $null_limit, \"output_tokens\": $null_limit}"
[ "$(wc -l <<<"$out")" = 1 ] || fail "output is not one line: $out"

# Without --provider the profile is openai.
out2=$(printf 'x-ratelimit-remaining-tokens: 991, 98\nx-ratelimit-limit-tokens: 150\n' | "$arlctl" parse-headers)
expect "default profile, folded value" "$(jq -c .tokens <<<"$out2")" \
	'{"limit": 150, "remaining": 98, "reset_ms": null, "window": "minute"}'
expect "no status line" "$(jq .status <<<"$out2")" null

out=$(printf 'HTTP/1.1 429 Too Many Requests\r\ndate: Tue, 26 Mar 2024 19:59:59 GMT\r\nanthropic-ratelimit-requests-limit: 5\r\nanthropic-ratelimit-requests-remaining: 0\r\nanthropic-ratelimit-requests-reset: 2024-03-26T20:00:00Z\r\nanthropic-ratelimit-tokens-limit: 25000\r\nanthropic-ratelimit-tokens-remaining: 16000\r\nanthropic-ratelimit-tokens-reset: 2024-03-26T20:00:00Z\r\nretry-after: 1\r\n\r\n' | parse anthropic)
expect "anthropic sample" "$out" "{\"status\": 429, \"retry_after_ms\": 1000,
	\"requests\": {\"limit\": 5, \"remaining\": 0, \"reset_ms\": 1000, \"window\": \"minute\"},
	\"tokens\": {\"limit\": 25000, \"remaining\": 16000, \"reset_ms\": 1000, \"window\": \"minute\"},
	\"input_tokens\": $null_limit, \"output_tokens\": $null_limit}"

out=$(printf 'x-ratelimit-limit-requests: 14400\nx-ratelimit-remaining-requests: 14370\nx-ratelimit-reset-requests: 2m59.56s\nx-ratelimit-limit-tokens: 18000\nx-ratelimit-remaining-tokens: 17997\nx-ratelimit-reset-tokens: 7.66s\n' | parse groq)
expect "groq requests per day" "$(jq -c .requests <<<"$out")" \
	'{"limit": 14400, "remaining": 14370, "reset_ms": 179560, "window": "day"}'
expect "groq tokens per minute" "$(jq -c .tokens <<<"$out")" \
	'{"limit": 18000, "remaining": 17997, "reset_ms": 7660, "window": "minute"}'

# A comma decimal separator must not change "7.66s".
if locale -a 2>/dev/null | grep -qix 'de_DE.utf-\?8'; then
	out_de=$(printf 'x-ratelimit-remaining-tokens: 5\nx-ratelimit-reset-tokens: 7.66s\nretry-after: 1.5\n' |
		LC_ALL=de_DE.UTF-8 "$arlctl" parse-headers --provider groq)
	expect "de_DE locale" "$(jq -c '[.tokens.reset_ms, .retry_after_ms]' <<<"$out_de")" '[7660, 1500]'
else
	echo "note: locale de_DE.UTF-8 not installed, locale check skipped"
fi

out=$(printf 'HTTP/1.1 200 OK\nx-ratelimit-limit-tokens: -1\nx-ratelimit-remaining-tokens: -1\nx-ratelimit-reset-tokens: 0\n\n' | parse azure)
expect "azure -1" "$(jq -c .tokens <<<"$out")" "$null_limit"

out=$(printf 'retry-after-ms: 1500\nretry-after: 2\n' | parse azure)
expect "retry-after-ms wins" "$(jq .retry_after_ms <<<"$out")" 1500
out=$(printf 'retry-after: 1e400\n' | parse openai)
expect "retry-after cap" "$(jq .retry_after_ms <<<"$out")" 604800000
out=$(printf 'retry-after: soon\n' | parse openai)
expect "retry-after soon" "$(jq .retry_after_ms <<<"$out")" null

# Without a Date header an absolute reset is measured from the local clock.
reset=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
out=$(printf 'anthropic-ratelimit-tokens-remaining: 1000\nanthropic-ratelimit-tokens-reset: %s\n' "$reset" | parse anthropic)
jq -e '.tokens.reset_ms > 3590000 and .tokens.reset_ms <= 3600000' <<<"$out" >/dev/null ||
	fail "reset an hour ahead of the local clock: $out"
out=$(printf 'anthropic-ratelimit-tokens-remaining: 1000\nanthropic-ratelimit-tokens-reset: 2999-01-01T00:00:00Z\n' | parse anthropic)
expect "reset cap" "$(jq .tokens.reset_ms <<<"$out")" 604800000

out=$(printf 'HTTP/1.1 429 Too Many Requests\n\n{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier","quotaValue":"50"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"33s"}]}}\n' | parse gemini)
expect "gemini 429" "$(jq -c '[.retry_after_ms, .requests]' <<<"$out")" \
	'[33000, {"limit": 50, "remaining": 0, "reset_ms": null, "window": "day"}]'

# Empty input: every field null, all four families present.
out=$(parse together </dev/null)
expect "empty input" "$out" "{\"status\": null, \"retry_after_ms\": null,
	\"requests\": $null_limit, \"tokens\": $null_limit,
	\"input_tokens\": $null_limit, \"output_tokens\": $null_limit}"

# Errors: an invalid provider names the value and the valid names.
set +e
err=$("$arlctl" parse-headers --provider openia 2>&1 </dev/null)
status=$?
set -e
[ "$status" = 2 ] || fail "invalid provider exited $status, expected 2"
for word in openia openai azure anthropic groq mistral together gemini; do
	grep -q "$word" <<<"$err" || fail "invalid provider message lacks '$word': $err"
done
set +e
"$arlctl" parse-headers --provider </dev/null 2>/dev/null
[ $? = 2 ] || fail "a missing --provider value did not exit 2"
"$arlctl" parse-headers extra </dev/null 2>/dev/null
[ $? = 2 ] || fail "an extra argument did not exit 2"
set -e
"$arlctl" parse-headers --help | grep -q -- '--provider NAME' || fail "--help lacks --provider"
"$arlctl" --help | grep -q 'parse-headers' || fail "arlctl --help lacks parse-headers"
echo "arlctl parse-headers: all checks passed"
