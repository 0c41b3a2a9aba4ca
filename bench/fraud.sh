#!/usr/bin/env bash
# bench/fraud.sh: legitimate users under a brute-force flood.
# Target: under wrong-password requests from 1,000 sources, legitimate users
# keep >= 99.9 % success and their p99 latency stays within 2x of the quiet
# baseline. What is measured and how: bench/fraudflood/main.go; the numbers
# go to docs/BENCHMARKS.md.
#
#   bash bench/fraud.sh                          # about 90 s with the defaults
#   sudo BENCH_FRAUD_KERNEL=1 bash bench/fraud.sh     # bans enforced in the kernel
#   sudo BENCH_FRAUD_KERNEL=both bash bench/fraud.sh  # user space, then kernel; side by side
#
# Not part of the test suite. Needs Go (and taskset from util-linux when
# pinning; installed with apt-get when missing). Builds pbxgate and
# bench/fraudflood into a temporary directory and runs fraudflood, which
# starts the login backend, pbxgate and the attackers on loopback and stops
# them again. Results: a table on stdout and in
# bench/results/fraud-latest.txt, the same as JSON in
# bench/results/fraud-latest.json. Exit status 0 when the targets are met,
# 1 when not (the results are written either way), other on failure.
#
# Modes (BENCH_FRAUD_KERNEL):
#   0     (default) bans enforced by pbxgate in user space: a banned
#         source's connections are accepted and closed. Runs in the host's
#         network namespace, as root or not.
#   1     bans also enforced in the kernel: pbxgate's config enables
#         firewall.kernel_blacklist, so it mirrors its bans into the nftables
#         table inet pbxgate_bl (prerouting, priority raw), which drops a
#         banned attacker's SYNs; its connection attempts then time out
#         (BENCH_FRAUD_CONNECT_TIMEOUT) instead of being refused. Needs root:
#         the whole benchmark (backend, pbxgate, users, attackers, all on
#         127.x) runs in a fresh network namespace pbxfraud-<pid>-kernel-<round>,
#         created here and deleted on exit, so the host's nftables are never
#         touched. Installs nftables and iproute2 with apt-get when missing.
#         Results in bench/results/fraud-kernel-latest.{txt,json}; the table
#         also shows the packets the kernel dropped (second by second), and
#         `nft list chain inet pbxgate_bl prerouting` as it was at the end.
#   both  user space, then kernel, each in a fresh network namespace of its
#         own (same sysctls, no other traffic), BENCH_FRAUD_ROUNDS times
#         (the order alternates by round); then both tables side by side with
#         each run's p99 ratio and verdict (`fraudflood compare`), also in
#         bench/results/fraud-compare-latest.txt. Needs root.
#
# Knobs (environment), mirroring fraudflood's flags:
#   BENCH_FRAUD_USERS=20        legitimate users (-users), sources 127.0.1.x
#   BENCH_FRAUD_RATE=500        their total req/s, open loop (-rate)
#   BENCH_FRAUD_WARMUP=2s       unmeasured legitimate load first (-warmup)
#   BENCH_FRAUD_QUIET=10s       quiet phase, the baseline (-quiet)
#   BENCH_FRAUD_FLOOD=60s       flood phase (-flood): one ban window, long enough for
#                               throttled attackers (fraud.suspect_rate) to be banned
#   BENCH_FRAUD_ATTACKERS=1000  attacker sources 127.2.x.y (-attackers)
#   BENCH_FRAUD_ATTEMPTS=2000   attempts per attacker at most (-attempts)
#   BENCH_FRAUD_TIMEOUT=5s      per request (-timeout)
#   BENCH_FRAUD_CONNECT_TIMEOUT=1s  an attacker gives up a connection attempt
#                               after this long (-connect-timeout; the first SYN
#                               retransmission is due at 1 s): what a banned
#                               attacker waits per attempt when the kernel drops it.
#                               Below about 200 ms the harness's own delays (1000
#                               attacker goroutines on one niced, shared CPU) make
#                               handshakes "time out" before any ban, which the
#                               ban accounting then counts as answered after a ban
#   BENCH_FRAUD_LATE=1ms        send lag counted as late (-late)
#   BENCH_FRAUD_NICE=10         nice value of the attacker process (-attacker-nice)
#   BENCH_FRAUD_THRESHOLD=10    pbxgate fraud.suspicious_per_minute (-threshold)
#   BENCH_FRAUD_BLACKLIST_FOR=30m  pbxgate fraud.blacklist_for (-blacklist-for)
#   BENCH_FRAUD_SUSPECT_RATE=200   pbxgate fraud.suspect_rate (-suspect-rate)
#   BENCH_FRAUD_UNPROVEN=16     pbxgate fraud.unproven_concurrency (-unproven-concurrency)
#   BENCH_FRAUD_SETTLE=60s      wait for the last bans to be logged (-settle)
#   BENCH_PIN=1                 1: fraudflood (users, backend, attackers) on
#                               CPU 0, pbxgate alone on CPU 1 with GOMAXPROCS=1;
#                               0: no pinning, pbxgate gets one thread per CPU
#   BENCH_FRAUD_KERNEL=0        0, 1 or both: see Modes above
#   BENCH_FRAUD_NETNS=0         1: run mode 0 in a fresh network namespace too
#   BENCH_FRAUD_ROUNDS=1        rounds of the modes (1..5)
#   BENCH_WAIT_IDLE=0           before each run, wait up to this many seconds for
#                               the CPUs to be >= 90 % idle (shared machines)
#   PBXGATE_BIN=path            use a prebuilt pbxgate instead of building ./cmd/pbxgate
#   BENCH_KEEP=1                keep the temporary directories (config, pbxgate log)
#
# Pinning (BENCH_PIN=1, the default). On 2 cores the load generator competes
# with the proxy; pinning makes runs repeatable and charges pbxgate only for
# its own CPU: it models a one-core gateway. Everything else shares CPU 0:
# the users, the login backend and the attackers, each in its own process.
# The attackers connect as fast as the scheduler lets them, so they would
# take every cycle they can get: they run niced (10), so that the users' and
# the backend's wake-ups are not queued behind them (real attackers do not
# share the users' CPU either), while they still use all of CPU 0 the others
# leave idle. pbxgate gets CPU 1 and GOMAXPROCS=1, as in bench/run.sh. On
# loopback the kernel's work for the attackers' connections is mostly done
# on the sending CPU (0). The control user (straight to the backend, no
# pbxgate) in the output shows how much of the latency is the harness's.
# BENCH_PIN=0 lets pbxgate use both CPUs (GOMAXPROCS=2) but share them with
# the load: closer to a two-core gateway, noisier.
#
# In the kernel mode a dropped SYN costs the kernel's receive path on
# loopback, which runs in softirq on the sending CPU: with pinning that is
# CPU 0 (the attackers'), not pbxgate's. What the kernel saves pbxgate
# shows in its CPU seconds; what the drops cost shows in CPU 0's busy %.
set -euo pipefail

USERS=${BENCH_FRAUD_USERS:-20}
RATE=${BENCH_FRAUD_RATE:-500}
WARMUP=${BENCH_FRAUD_WARMUP:-2s}
QUIET=${BENCH_FRAUD_QUIET:-10s}
FLOOD=${BENCH_FRAUD_FLOOD:-60s}
ATTACKERS=${BENCH_FRAUD_ATTACKERS:-1000}
ATTEMPTS=${BENCH_FRAUD_ATTEMPTS:-2000}
TIMEOUT=${BENCH_FRAUD_TIMEOUT:-5s}
LATE=${BENCH_FRAUD_LATE:-1ms}
NICE=${BENCH_FRAUD_NICE:-10}
THRESHOLD=${BENCH_FRAUD_THRESHOLD:-10}
BLACKLIST_FOR=${BENCH_FRAUD_BLACKLIST_FOR:-30m}
SUSPECT_RATE=${BENCH_FRAUD_SUSPECT_RATE:-200}
UNPROVEN=${BENCH_FRAUD_UNPROVEN:-16}
SETTLE=${BENCH_FRAUD_SETTLE:-60s}
CONNECT_TIMEOUT=${BENCH_FRAUD_CONNECT_TIMEOUT:-1s}
MODE=${BENCH_FRAUD_KERNEL:-0}
NETNS=${BENCH_FRAUD_NETNS:-0}
ROUNDS=${BENCH_FRAUD_ROUNDS:-1}
WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
PIN=${BENCH_PIN:-1}
KEEP=${BENCH_KEEP:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '%s fraud: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

case $MODE in
0) MODES=(user) ;;
1) MODES=(kernel) ;;
both) MODES=(user kernel) ;;
*) die "BENCH_FRAUD_KERNEL must be 0, 1 or both, got '$MODE'" ;;
esac
[[ "$NETNS" == 0 || "$NETNS" == 1 ]] || die "BENCH_FRAUD_NETNS must be 0 or 1, got '$NETNS'"
[[ "$ROUNDS" =~ ^[1-5]$ ]] || die "BENCH_FRAUD_ROUNDS must be 1..5, got '$ROUNDS'"
[[ "$WAIT_IDLE" =~ ^[0-9]+$ ]] || die "BENCH_WAIT_IDLE must be a number of seconds, got '$WAIT_IDLE'"
# A network namespace for the kernel mode always, for the user-space mode
# when asked or when it runs beside the kernel mode (the same conditions).
use_netns() { [[ "$1" == kernel || "$MODE" == both || "$NETNS" == 1 ]]; }

WORK=""
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh" # cpu_idle, wait_idle, need_tools (its cleanup is replaced below)

NAMESPACES=() # created by this run; deleted on exit
cleanup() {
	local ns
	for ns in "${NAMESPACES[@]}"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if [[ "$KEEP" == 1 ]]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v go >/dev/null || die "needs Go (https://go.dev/dl/) on PATH"
need_ns=0
for m in "${MODES[@]}"; do use_netns "$m" && need_ns=1; done
if ((need_ns)); then
	[[ $(id -u) == 0 ]] || die "BENCH_FRAUD_KERNEL=$MODE needs root: network namespaces and nftables"
	need_tools ip:iproute2 nft:nftables
	PATH="$PATH:/usr/sbin:/sbin"
fi
ncpu=$(nproc --all)
if [[ "$PIN" == 1 && $ncpu -ge 2 ]] && ! command -v taskset >/dev/null; then
	[[ $(id -u) == 0 ]] || die "missing taskset: run as root or apt-get install -y util-linux"
	log "installing util-linux"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq util-linux >/dev/null
fi

# fraudflood lifts its soft open-file limit to the hard one; 1,000 attackers
# need about 3,000 descriptors in pbxgate.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/pbxgate-fraud.XXXXXX)
mkdir -p "$BENCH_DIR/results"
log "building into $WORK"
(cd "$REPO" && go build -o "$WORK/fraudflood" ./bench/fraudflood)
if [[ -n "$PBXGATE_BIN" ]]; then
	cp "$PBXGATE_BIN" "$WORK/pbxgate"
else
	(cd "$REPO" && go build -o "$WORK/pbxgate" ./cmd/pbxgate)
fi

if [[ "$PIN" == 1 && $ncpu -ge 2 ]]; then
	GEN=(env GOMAXPROCS=1 taskset -c 0)
	PBX_PIN=(-pbxgate-cpus 1 -pbxgate-gomaxprocs 1)
	PINNING="fraudflood (users, login backend, attackers niced $NICE) on CPU 0; pbxgate alone on CPU 1, GOMAXPROCS=1"
else
	GEN=()
	PBX_PIN=()
	PINNING="none; attackers niced $NICE"
fi
commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
os=$(. /etc/os-release && echo "$PRETTY_NAME")

args=(-pbxgate "$WORK/pbxgate" "${PBX_PIN[@]}"
	-users "$USERS" -rate "$RATE" -warmup "$WARMUP" -quiet "$QUIET" -flood "$FLOOD"
	-attackers "$ATTACKERS" -attempts "$ATTEMPTS" -timeout "$TIMEOUT" -connect-timeout "$CONNECT_TIMEOUT" -late "$LATE"
	-attacker-nice "$NICE" -threshold "$THRESHOLD" -blacklist-for "$BLACKLIST_FOR" -suspect-rate "$SUSPECT_RATE" -unproven-concurrency "$UNPROVEN" -settle "$SETTLE"
	-meta "pinning=$PINNING" -meta "commit=$commit" -meta "cpu=$cpu" -meta "cores=$ncpu" -meta "os=$os")
[[ "$KEEP" == 1 ]] && args+=(-keep)

# run_mode MODE ROUND: one fraudflood run with bans enforced as MODE (user,
# kernel) says; the table goes to $WORK/fraud-MODE-rROUND.txt, JSON beside
# it. Returns fraudflood's exit status.
run_mode() {
	local m=$1 r=$2 out="$WORK/fraud-$1-r$2" ns="" wrap=() extra=() label rc=0 idle
	label="user space"
	if [[ "$m" == kernel ]]; then
		label="kernel"
		extra+=(-kernel-blacklist)
	fi
	if use_netns "$m"; then
		# Explicit checks: set -e does not apply in a function called with ||.
		ns="pbxfraud-$$-$m-$r"
		ip netns add "$ns" || { log "ERROR: ip netns add $ns failed"; return 2; }
		NAMESPACES+=("$ns")
		ip -n "$ns" link set lo up || { log "ERROR: cannot bring up lo in $ns"; return 2; } # 127.0.0.0/8 is on lo
		wrap=(ip netns exec "$ns")
	fi
	wait_idle "$WAIT_IDLE"
	idle=$(cpu_idle 2)
	extra+=(-json "$out.json" -meta "mode=$label" -meta "netns=${ns:-host}" -meta "round=$r/$ROUNDS" -meta "idle_before_pct=$idle")
	log "$label, round $r/$ROUNDS (network namespace ${ns:-of the host}; CPUs $idle % idle)"
	log "running: ${wrap[*]} ${GEN[*]} fraudflood ${args[*]} ${extra[*]}"
	"${wrap[@]}" "${GEN[@]}" "$WORK/fraudflood" "${args[@]}" "${extra[@]}" >"$out.txt" || rc=$?
	if [[ -n "$ns" && "$m" == kernel ]]; then
		# The table outlives pbxgate; the namespace goes with it below.
		{
			printf '\n$ nft list chain inet pbxgate_bl prerouting   # in %s, at the end\n' "$ns"
			ip netns exec "$ns" nft list chain inet pbxgate_bl prerouting 2>&1 || true
		} >>"$out.txt"
	fi
	if [[ -n "$ns" ]]; then
		ip netns del "$ns" 2>/dev/null || log "WARNING: could not delete network namespace $ns"
	fi
	cat "$out.txt"
	return "$rc"
}

worst=0
RUNS=()
declare -A LATEST=()
for ((r = 1; r <= ROUNDS; r++)); do
	order=("${MODES[@]}")
	((r % 2 == 0)) && mapfile -t order < <(printf '%s\n' "${MODES[@]}" | tac)
	for m in "${order[@]}"; do
		rc=0
		run_mode "$m" "$r" || rc=$?
		((rc == 0 || rc == 1)) || die "fraudflood failed (exit $rc, mode $m, round $r)"
		((rc > worst)) && worst=$rc
		LATEST[$m]="$WORK/fraud-$m-r$r"
		RUNS+=("$WORK/fraud-$m-r$r.json")
	done
done

for m in "${MODES[@]}"; do
	name=fraud-latest
	[[ "$m" == kernel ]] && name=fraud-kernel-latest
	cp "${LATEST[$m]}.txt" "$BENCH_DIR/results/$name.txt"
	cp "${LATEST[$m]}.json" "$BENCH_DIR/results/$name.json"
	log "wrote bench/results/$name.txt and bench/results/$name.json"
done
if ((${#RUNS[@]} > 1)); then
	echo
	echo "=== side by side ($commit, $(date -u +%Y-%m-%dT%H:%M:%SZ)) ==="
	rc=0
	"$WORK/fraudflood" compare "${RUNS[@]}" | tee "$WORK/compare.txt" || rc=$?
	((rc == 0 || rc == 1)) || die "fraudflood compare failed (exit $rc)"
	cp "$WORK/compare.txt" "$BENCH_DIR/results/fraud-compare-latest.txt"
	log "wrote bench/results/fraud-compare-latest.txt"
fi
exit "$worst"
