#!/usr/bin/env bash
# bench/blacklist.sh: what enforcing a ban in the kernel saves. One banned
# source floods pbxgate's SIP UDP port; the ban is enforced either in user
# space only (firewall.kernel_blacklist off: every datagram reaches
# pbxgate, whose fraud guard drops it) or in the kernel (on: the bl4 rule of
# table inet pbxgate_bl drops it at prerouting, priority raw, before
# conntrack and before pbxgate's socket).
# Reported per case: datagrams offered and dropped per second (and where:
# kernel rule, pbxgate, full socket buffer), pbxgate's CPU seconds per
# million datagrams, the whole machine's, and the flooder's. Checked: in
# the kernel case >= 99.9 % of the datagrams die in the kernel; in the user
# space case none do (the table is absent). No throughput target.
#
#   sudo bash bench/blacklist.sh      # about 1-2 minutes with the defaults
#
# Not part of the test suite. Needs root (network namespaces, nftables) and
# Go; installs nftables, iproute2 and taskset (util-linux) with apt-get when
# they are missing. Builds pbxgate and bench/blflood (the flooder and the
# report) into a temporary directory, creates two network namespaces joined
# by a veth pair (server 10.98.9.1, banned source 10.98.9.2; names
# pbxbl-srv-<pid> and pbxbl-cli-<pid>), and removes them and every process
# it started on exit. The host's own namespace is not touched. Results: a
# table on stdout and in bench/results/blacklist-latest.txt, the same as
# JSON in bench/results/blacklist-latest.json. Exit status 0 when the
# checks pass, 1 when not (the results are written either way), other on
# failure.
#
# Each run: a fresh data directory, pbxgate started in the server
# namespace, the source banned for an hour with `pbxgate ban` (over the CLI
# socket) before the flood, then blflood in the client namespace sends
# one 250-byte SIP OPTIONS (from a scanner) over and over (sendmmsg, BENCH_BL_BATCH per call)
# for BENCH_BL_DURATION seconds or BENCH_BL_MAX datagrams, whichever comes
# first. Counters are read before and after: pbxgate's CPU time
# (/proc/PID/stat), the machine's busy time (/proc/stat), the bl4 rule's
# packet counter, and the server namespace's UDP InDatagrams and
# RcvbufErrors (/proc/net/snmp). pbxgate is stopped after each run and the
# table inet pbxgate_bl, which pbxgate leaves in the kernel on purpose, is
# deleted. Rounds alternate the order of the cases; the median counts.
#
# Knobs (environment):
#   BENCH_BL_ROUNDS=3          rounds (each runs every case once)
#   BENCH_BL_DURATION=10       seconds per flood run at most
#   BENCH_BL_MAX=20000000      datagrams per flood run at most
#   BENCH_BL_RATE=0            datagrams per second; 0: as fast as the flooder can
#   BENCH_BL_BATCH=64          datagrams per sendmmsg call
#   BENCH_BL_CASES="user kernel"  which cases
#   BENCH_PIN=1                1: flooder on CPU 0 with GOMAXPROCS=1, pbxgate alone on CPU 1
#                              with GOMAXPROCS=1; 0: no pinning
#   PBXGATE_BIN=path           use a prebuilt pbxgate instead of building ./cmd/pbxgate
#   BENCH_KEEP=1               keep the temporary directory (configs, logs, raw lines)
#   BENCH_WAIT_IDLE=0          wait up to this many seconds for the CPUs to be >= 90 % idle
#
# Reading the numbers. On a veth pair the receiving side's work (the
# prerouting hook, the socket enqueue) runs in softirq on the sending CPU,
# so with pinning it lands on the flooder's CPU 0: pbxgate's CPU 1 carries
# only what pbxgate itself does with the datagrams. "host s/Mpkt" counts
# both CPUs and shows what the kernel drop saves overall; the flooder's
# share is the same in both cases apart from the cheaper receive path.
set -euo pipefail

ROUNDS=${BENCH_BL_ROUNDS:-3}
DURATION=${BENCH_BL_DURATION:-10}
MAX=${BENCH_BL_MAX:-20000000}
RATE=${BENCH_BL_RATE:-0}
BATCH=${BENCH_BL_BATCH:-64}
CASES=${BENCH_BL_CASES:-user kernel}
PIN=${BENCH_PIN:-1}
KEEP=${BENCH_KEEP:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '%s blacklist: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }
posint BENCH_BL_ROUNDS "$ROUNDS"
posint BENCH_BL_DURATION "$DURATION"
posint BENCH_BL_MAX "$MAX"
posint BENCH_BL_BATCH "$BATCH"
[[ "$RATE" =~ ^[0-9]+$ ]] || die "BENCH_BL_RATE must be a number, got '$RATE'"
((ROUNDS <= 20 && DURATION <= 300 && BATCH <= 1024)) || die "BENCH_BL_ROUNDS <= 20, BENCH_BL_DURATION <= 300 and BENCH_BL_BATCH <= 1024, please"
for c in $CASES; do [[ "$c" == user || "$c" == kernel ]] || die "BENCH_BL_CASES: unknown case '$c'"; done

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
LAST_PID=""
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh" # cleanup, stop_wait, start, stop, render, cpu_idle, wait_idle, need_tools, report_and_exit

NS_SRV=pbxbl-srv-$$
NS_CLI=pbxbl-cli-$$
SRV_IP=10.98.9.1
BANNED=10.98.9.2
SIP_PORT=5060

cleanup_all() {
	cleanup
	ip netns del "$NS_SRV" 2>/dev/null || true
	ip netns del "$NS_CLI" 2>/dev/null || true
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

# --------------------------------------------------------------- prerequisites
[[ $(id -u) == 0 ]] || die "needs root: network namespaces and nftables"
need_tools nft:nftables ip:iproute2 taskset:util-linux
PATH="$PATH:/usr/sbin:/sbin"
command -v go >/dev/null || die "needs Go (https://go.dev/dl/) on PATH"

ncpu=$(nproc)
if [[ "$PIN" == 1 && $ncpu -ge 2 ]]; then
	GEN=(taskset -c 0 env GOMAXPROCS=1)
	SRV=(taskset -c 1)
	THREADS=1
	PINNING="blflood on CPU 0 (GOMAXPROCS=1); pbxgate alone on CPU 1, GOMAXPROCS=1"
else
	GEN=()
	SRV=()
	THREADS=$ncpu
	PINNING="none; pbxgate GOMAXPROCS=$THREADS"
fi

WORK=$(mktemp -d /tmp/pbxgate-blacklist.XXXXXX)
mkdir -p "$WORK/bin" "$BENCH_DIR/results"
RAW="$WORK/raw.txt"
: >"$RAW"
put() { printf '%s\n' "$@" >>"$RAW"; }

# ---------------------------------------------------------------------- build
log "building into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/" ./bench/blflood)
if [[ -n "$PBXGATE_BIN" ]]; then
	cp "$PBXGATE_BIN" "$WORK/bin/pbxgate"
else
	(cd "$REPO" && go build -o "$WORK/bin/pbxgate" ./cmd/pbxgate)
fi
B="$WORK/bin"

# ------------------------------------------------------------------ network
ip netns add "$NS_SRV"
ip netns add "$NS_CLI"
ip link add "bls$$" netns "$NS_SRV" type veth peer name "blc$$" netns "$NS_CLI"
ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "bls$$"
ip -n "$NS_CLI" addr add "$BANNED/24" dev "blc$$"
for ns in "$NS_SRV" "$NS_CLI"; do
	ip -n "$ns" link set lo up
done
ip -n "$NS_SRV" link set "bls$$" up
ip -n "$NS_CLI" link set "blc$$" up
ip netns exec "$NS_CLI" ping -c 1 -W 5 "$SRV_IP" >/dev/null 2>&1 || true # resolve the neighbour

# ------------------------------------------------------------------ counters
CLK_TCK=$(getconf CLK_TCK)
# proc_cpu PID: the process's user + system CPU seconds.
proc_cpu() { awk -v hz="$CLK_TCK" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }
# host_busy: busy CPU seconds of all CPUs (user nice system irq softirq steal).
host_busy() { awk -v hz="$CLK_TCK" 'NR == 1 {printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz}' /proc/stat; }
# udp_stat NAME: the server namespace's UDP counter NAME from /proc/net/snmp.
udp_stat() {
	ip netns exec "$NS_SRV" cat /proc/net/snmp | awk -v k="$1" '
		$1 == "Udp:" && !h { for (i = 2; i <= NF; i++) if ($i == k) c = i; h = 1; next }
		$1 == "Udp:" && h { print $c; exit }'
}
# kernel_drops: the bl4 drop rule's packet counter, 0 without the table.
kernel_drops() {
	local n
	n=$(ip netns exec "$NS_SRV" nft list chain inet pbxgate_bl prerouting 2>/dev/null |
		sed -n 's/.*ip saddr @bl4 counter packets \([0-9]*\).*/\1/p')
	echo "${n:-0}"
}
# delta A B: B - A with three decimals.
delta() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }

# wait_listening LOG PID: wait up to 10 s for pbxgate's "listening" line.
wait_listening() {
	local i
	for ((i = 0; i < 200; i++)); do
		kill -0 "$2" 2>/dev/null || { tail -20 "$1" >&2; die "pbxgate exited during start-up"; }
		grep -qs '"msg":"listening"' "$1" && return 0
		sleep 0.05
	done
	tail -20 "$1" >&2
	die "pbxgate did not listen within 10 s"
}

# in_kernel_set: whether bl4 holds the banned source.
in_kernel_set() {
	local out # not a pipe into grep -q: with pipefail, nft's SIGPIPE would fail it
	out=$(ip netns exec "$NS_SRV" nft list set inet pbxgate_bl bl4 2>/dev/null) || return 1
	[[ "$out" == *"$BANNED"* ]]
}

wait_idle "$WAIT_IDLE"
pbx_version=$("$B/pbxgate" version 2>/dev/null | head -1 | sed "s/^pbxgate //" || echo unknown)
put "meta.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"meta.cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
	"meta.cores=$ncpu" "meta.kernel=Linux $(uname -r)" \
	"meta.os=$(. /etc/os-release && echo "$PRETTY_NAME")" \
	"meta.go=$(go version | awk '{print $3}')" "meta.nft=$(nft --version 2>/dev/null | head -1)" \
	"meta.pbxgate_version=$pbx_version" "meta.commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
	"meta.pinning=$PINNING" "meta.loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" "meta.idle_before_pct=$(cpu_idle 2)" \
	"meta.rounds=$ROUNDS" "meta.duration=$DURATION" "meta.max=$MAX" "meta.rate=$([[ $RATE == 0 ]] && echo unlimited || echo "$RATE/s")" \
	"meta.batch=$BATCH"

# run_case CASE ROUND: one flood run with the ban enforced as CASE says.
run_case() {
	local c=$1 r=$2 kernel=false name out pid line
	[[ "$c" == kernel ]] && kernel=true
	name="pbxgate-$c-r$r"
	rm -rf "$WORK/data" && mkdir -p "$WORK/data"
	render "$BENCH_DIR/blacklist/pbxgate.yaml.in" "$WORK/$name.yaml" DATA_DIR="$WORK/data" SIP="$SRV_IP:$SIP_PORT" KERNEL="$kernel"
	ip netns exec "$NS_SRV" nft delete table inet pbxgate_bl 2>/dev/null || true
	start "$name" ip netns exec "$NS_SRV" "${SRV[@]}" env GOMAXPROCS="$THREADS" "$B/pbxgate" serve -c "$WORK/$name.yaml"
	pid=$LAST_PID
	wait_listening "$WORK/$name.log" "$pid"
	"$B/pbxgate" ban "$BANNED" --for 1h --note benchmark -c "$WORK/$name.yaml" >/dev/null ||
		die "pbxgate ban failed (see $WORK/$name.log)"
	if [[ "$c" == kernel ]]; then
		local i
		for ((i = 0; i < 100; i++)); do
			in_kernel_set && break
			sleep 0.05
		done
		in_kernel_set || die "the ban did not reach the kernel set within 5 s"
	elif ip netns exec "$NS_SRV" nft list table inet pbxgate_bl >/dev/null 2>&1; then
		die "table inet pbxgate_bl exists in the user-space case"
	fi
	sleep 1

	local cpu0 host0 kd0 in0 rb0 cpu1 host1 kd1 in1 rb1
	cpu0=$(proc_cpu "$pid") host0=$(host_busy) kd0=$(kernel_drops) in0=$(udp_stat InDatagrams) rb0=$(udp_stat RcvbufErrors)
	out="$WORK/blflood-$c-r$r.log"
	timeout $((DURATION + 60)) ip netns exec "$NS_CLI" "${GEN[@]}" "$B/blflood" flood -src "$BANNED" -dst "$SRV_IP:$SIP_PORT" \
		-duration "${DURATION}s" -max "$MAX" -batch "$BATCH" -rate "$RATE" >"$out" 2>&1 ||
		{ cat "$out" >&2; die "blflood failed"; }
	sleep 0.2 # pbxgate reads what is left in its socket buffer
	cpu1=$(proc_cpu "$pid") host1=$(host_busy) kd1=$(kernel_drops) in1=$(udp_stat InDatagrams) rb1=$(udp_stat RcvbufErrors)
	line=$(sed -n 's/^BLFLOOD //p' "$out" | tail -1)
	[[ -n "$line" ]] || { cat "$out" >&2; die "no BLFLOOD line"; }
	local kv
	for kv in $line; do
		case $kv in
		cpu=*) put "flood.$c.r$r.flood_cpu=${kv#cpu=}" ;;
		*) put "flood.$c.r$r.$kv" ;;
		esac
	done
	put "flood.$c.r$r.pbx_cpu=$(delta "$cpu0" "$cpu1")" "flood.$c.r$r.host_busy=$(delta "$host0" "$host1")" \
		"flood.$c.r$r.kernel_drops=$((kd1 - kd0))" "flood.$c.r$r.delivered=$((in1 - in0))" \
		"flood.$c.r$r.rcvbuf_errors=$((rb1 - rb0))"
	log "$c round $r: $line; pbxgate CPU $(delta "$cpu0" "$cpu1") s; kernel drops $((kd1 - kd0)), delivered $((in1 - in0)), socket overflow $((rb1 - rb0))"
	stop "$pid"
	if grep -q '"level":"ERROR"' "$WORK/$name.log"; then log "WARNING: error lines in $WORK/$name.log"; fi
	ip netns exec "$NS_SRV" nft delete table inet pbxgate_bl 2>/dev/null || true
}

read -r -a cases <<<"$CASES"
for ((r = 1; r <= ROUNDS; r++)); do
	order=("${cases[@]}")
	((r % 2 == 0)) && order=($(printf '%s\n' "${cases[@]}" | tac))
	for c in "${order[@]}"; do
		run_case "$c" "$r"
	done
done

# ------------------------------------------------------------------ report
report_and_exit "$B/blflood" blacklist
