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
)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
echo "install-deps: installing ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
	"${missing[@]}" >/dev/null
