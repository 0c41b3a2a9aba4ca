#!/usr/bin/env bash
# bench/fraud.sh: legitimate users under a brute-force flood.
# Target: under wrong-password requests from 1,000 sources, legitimate users
# keep >= 99.9 % success and their p99 latency stays within 2x of the quiet
# baseline. What is measured and how: bench/fraudflood/main.go; the numbers
# go to docs/BENCHMARKS.md.
#
#   bash bench/fraud.sh          # about 90 s with the defaults
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
#   BENCH_FRAUD_LATE=1ms        send lag counted as late (-late)
#   BENCH_FRAUD_NICE=10         nice value of the attacker process (-attacker-nice)
#   BENCH_FRAUD_THRESHOLD=10    pbxgate fraud.suspicious_per_minute (-threshold)
#   BENCH_FRAUD_BLACKLIST_FOR=30m  pbxgate fraud.blacklist_for (-blacklist-for)
#   BENCH_FRAUD_SUSPECT_RATE=200   pbxgate fraud.suspect_rate (-suspect-rate)
#   BENCH_FRAUD_SETTLE=60s      wait for the last bans to be logged (-settle)
#   BENCH_PIN=1                 1: fraudflood (users, backend, attackers) on
#                               CPU 0, pbxgate alone on CPU 1 with GOMAXPROCS=1;
#                               0: no pinning, pbxgate gets one thread per CPU
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
SETTLE=${BENCH_FRAUD_SETTLE:-60s}
PIN=${BENCH_PIN:-1}
KEEP=${BENCH_KEEP:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '%s fraud: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

WORK=""
cleanup() {
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
	-attackers "$ATTACKERS" -attempts "$ATTEMPTS" -timeout "$TIMEOUT" -late "$LATE"
	-attacker-nice "$NICE" -threshold "$THRESHOLD" -blacklist-for "$BLACKLIST_FOR" -suspect-rate "$SUSPECT_RATE" -settle "$SETTLE"
	-json "$WORK/fraud.json"
	-meta "pinning=$PINNING" -meta "commit=$commit" -meta "cpu=$cpu" -meta "cores=$ncpu" -meta "os=$os")
[[ "$KEEP" == 1 ]] && args+=(-keep)

log "running: ${GEN[*]} fraudflood ${args[*]}"
rc=0
"${GEN[@]}" "$WORK/fraudflood" "${args[@]}" >"$WORK/fraud.txt" || rc=$?
cat "$WORK/fraud.txt"
if ((rc == 0 || rc == 1)); then
	cp "$WORK/fraud.txt" "$BENCH_DIR/results/fraud-latest.txt"
	cp "$WORK/fraud.json" "$BENCH_DIR/results/fraud-latest.json"
	log "wrote bench/results/fraud-latest.txt and bench/results/fraud-latest.json"
	exit "$rc"
fi
die "fraudflood failed (exit $rc)"
