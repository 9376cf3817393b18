#!/usr/bin/env bash
# Installs the Debian 12 packages arl needs to build, test and run its demo.
# Does nothing when every package is already installed; otherwise runs
# apt-get (through sudo when not root).
set -euo pipefail

packages=(
	build-essential cmake pkg-config   # compiler and build
	check                              # test framework (libcheck)
	libinih-dev                        # arld's INI configuration
	libjsmn-dev                        # JSON in the stream tracker
	libmicrohttpd-dev                  # the demo's mock provider
	libcurl4-openssl-dev               # the demo's worker
	curl jq                            # the demo script's HTTP and JSON
	redis-server libhiredis-dev        # the Redis baseline of bench_compare
	clang                              # libFuzzer targets (fuzz/run.sh)
	liburcu-dev                        # RCU for arld's running state
	locales                            # de_DE.UTF-8 for the header parser's locale test
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}" >&2
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi

# The header parser must not depend on the process locale; its test runs
# again under a German locale, which a fresh machine lacks.
if ! locale -a 2>/dev/null | grep -qi '^de_DE\.utf-\?8$'; then
	echo "install-deps: generating the de_DE.UTF-8 locale" >&2
	"${sudo[@]}" localedef -i de_DE -f UTF-8 de_DE.UTF-8
fi
