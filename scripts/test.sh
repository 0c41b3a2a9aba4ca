#!/usr/bin/env bash
# Runs pbxgate's whole test suite: unit, fuzz seed corpora, and end-to-end
# tests against real peers (curl, slapd, ldapsearch, sipp, socat) started on loopback.
# Installs the Debian packages those peers come from when they are missing.
# Extra arguments go to `go test` (e.g. -run TestX, -v).
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=(curl slapd ldap-utils sip-tester socat coturn nftables iproute2)
missing=()
for p in "${PEERS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "installing test peers: ${missing[*]}"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# nft and ip live in /usr/sbin, which a minimal PATH (env -i, cron) lacks.
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin:/sbin" ;; esac

# Tests open many loopback connections.
ulimit -n 65536 2>/dev/null || true

go vet ./...
unformatted=$(gofmt -l cmd internal bench test 2>/dev/null || true)
if [ -n "$unformatted" ]; then
	echo "gofmt needed on:" $unformatted
	exit 1
fi
# Allocation counts (AllocsPerRun on the hot paths) and the memory bounds of
# the fraud engine (1M blacklisted addresses, 1M sources) are taken without
# the race detector, which makes sync.Pool drop items at random and inflates
# memory and time; those tests are built or run only without -race.
go test -count=1 -run 'Allocs|Memory|Bounded|Size' ./internal/...
exec go test -race -count=1 -timeout 20m "$@" ./...
