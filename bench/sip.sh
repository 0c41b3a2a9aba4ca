#!/usr/bin/env bash
# bench/sip.sh: SIP over UDP through pbxgate, side by side with Kamailio and
# with no forwarder at all, and pbxgate's memory with many SIP clients.
# Targets: pbxgate's sustainable call rate (INVITE/200/ACK/BYE, sipp) is at
# least 0.8 x Kamailio's, with zero failed calls and all policy on; the
# REGISTER rate is reported beside Kamailio's; pbxgate's RSS stays <= 200 MB
# with 100,000 UDP flows and <= 400 MB with 10,000 TLS SIP connections.
# What is measured and how to read it: docs/BENCHMARKS.md, section SIP.
#
#   bash bench/sip.sh            # about 7-10 minutes with the defaults
#
# Not part of the test suite. Needs Go; installs sipp (Debian package
# sip-tester), kamailio, taskset/chrt (util-linux) and ss (iproute2) with
# apt-get when they are missing. Builds pbxgate and bench/siputil into a
# temporary directory, picks free loopback ports, and stops every process it
# started on exit. Results: a table on stdout and in
# bench/results/sip-latest.txt, the same as JSON in
# bench/results/sip-latest.json. Exit status 0 when the targets are met, 1
# when not (the results are written either way), other on failure.
#
# Steps (BENCH_SIP_STEPS):
#   call      sipp UAC -> forwarder -> sipp UAS (-sn uas), bench/sip/uac-call.xml:
#             INVITE, 180, 200, ACK, BYE, 200 from the company domain
#             bench.example.com to an external number; for each case (direct
#             to the UAS, Kamailio, pbxgate) the highest rate that keeps up
#   register  the same with one REGISTER -> 200 OK (bench/sip/uac-register.xml,
#             uas-register.xml), 1,000 users in turn
#   mem       pbxgate alone: bench/siputil udp and tls open many flows /
#             connections, each registering once with a stub PBX, and read
#             pbxgate's VmRSS
#
# A rate step runs RATE x BENCH_SIP_STEP calls at RATE/s with a fresh UAS.
# It keeps up when every call succeeded and the run ended no later than at
# 95 % of RATE plus 0.5 s (one SIP T1, for a last call retransmitted once).
# The rate doubles from BENCH_SIP_START while it keeps up, then
# BENCH_SIP_BISECT bisections between the last rate that kept up and the
# first that did not; a rate counts as kept up when one of BENCH_SIP_TRIES
# runs does. The same search for every case, in the same run, the cases
# taking turns at every round. The forwarder's CPU time per run is recorded
# too: when the harness is the limit, CPU per call tells the forwarders apart.
#
# Knobs (environment):
#   BENCH_SIP_STEPS="call register mem"  which steps to run
#   BENCH_SIP_CASES="direct kamailio pbxgate"  which cases the rate steps run
#   BENCH_SIP_STEP=5         seconds of calls per rate step
#   BENCH_SIP_START=1000     first rate, calls (or REGISTERs) per second
#   BENCH_SIP_MAX=64000      highest rate tried
#   BENCH_SIP_BISECT=3       bisections after the first rate that fails
#   BENCH_SIP_TRIES=2        runs per rate before it counts as failed
#   BENCH_SIP_RECV_TIMEOUT=4000  ms sipp waits for an answer before the call fails
#   BENCH_SIP_FLOWS=100000   UDP flows for the memory step
#   BENCH_SIP_TLS_CONNS=10000  TLS SIP connections for the memory step
#   BENCH_SIP_KAM_MALLOC=tlsf  Kamailio's memory manager (-x): tlsf, fm or qm
#                            (Debian's default qm keeps debugging records and
#                            costs noticeably more CPU per message)
#   BENCH_PIN=1              1: sipp (UAC and UAS) and the stub PBX on CPU 0
#                            (SCHED_BATCH), the forwarder under test alone on
#                            CPU 1 (Kamailio children=1, pbxgate GOMAXPROCS=1);
#                            0: no pinning, one receiver/thread per CPU
#   PBXGATE_BIN=path         use a prebuilt pbxgate instead of building ./cmd/pbxgate;
#                            "none" runs only the direct and Kamailio cases
#   BENCH_KEEP=1             keep the temporary directory (configs, logs, sipp stats)
#   BENCH_WAIT_IDLE=0        wait up to this many seconds for the CPUs to be
#                            >= 90 % idle before starting (shared machines)
#
# Pinning (BENCH_PIN=1, the default). On 2 cores the load generator competes
# with the forwarder; pinning charges the forwarder only for its own CPU:
# it models a one-core SIP edge. sipp is single-threaded; its UAC and UAS
# share CPU 0 under SCHED_BATCH, so that one's wake-up does not preempt the
# other in the middle of a burst (as for wrk and the origin in bench/run.sh).
# Kamailio gets CPU 1 with one UDP receiver process; its other processes
# (main, timers) are on CPU 1 too but idle. pbxgate gets CPU 1 and
# GOMAXPROCS=1. The direct case shows the harness's own ceiling: when a
# forwarder reaches it, the forwarder was not the limit.
set -euo pipefail

STEPS=${BENCH_SIP_STEPS:-call register mem}
CASES=${BENCH_SIP_CASES:-direct kamailio pbxgate}
STEP=${BENCH_SIP_STEP:-5}
START=${BENCH_SIP_START:-1000}
MAX=${BENCH_SIP_MAX:-64000}
BISECT=${BENCH_SIP_BISECT:-3}
TRIES=${BENCH_SIP_TRIES:-2}
RECV_TIMEOUT=${BENCH_SIP_RECV_TIMEOUT:-4000}
FLOWS=${BENCH_SIP_FLOWS:-100000}
TLS_CONNS=${BENCH_SIP_TLS_CONNS:-10000}
KAM_MALLOC=${BENCH_SIP_KAM_MALLOC:-tlsf}
PIN=${BENCH_PIN:-1}
KEEP=${BENCH_KEEP:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
SIPDIR="$BENCH_DIR/sip"

log() { printf '%s sip: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
has_case() { [[ " $CASES " == *" $1 "* ]]; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }
posint BENCH_SIP_STEP "$STEP"
posint BENCH_SIP_START "$START"
posint BENCH_SIP_MAX "$MAX"
posint BENCH_SIP_TRIES "$TRIES"
posint BENCH_SIP_RECV_TIMEOUT "$RECV_TIMEOUT"
posint BENCH_SIP_FLOWS "$FLOWS"
posint BENCH_SIP_TLS_CONNS "$TLS_CONNS"
[[ "$BISECT" =~ ^[0-9]+$ ]] || die "BENCH_SIP_BISECT must be a number, got '$BISECT'"
[[ "$KAM_MALLOC" =~ ^(qm|fm|tlsf)$ ]] || die "BENCH_SIP_KAM_MALLOC must be qm, fm or tlsf, got '$KAM_MALLOC'"

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
LAST_PID=""
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh" # cleanup, stop_wait, start, stop, render, cpu_idle, wait_idle, need_tools, report_and_exit

trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listen PROTO PORT PID NAME: wait up to 10 s until PID listens on
# 127.0.0.1:PORT (PROTO tcp or udp).
wait_listen() {
	local proto=$1 port=$2 pid=$3 name=$4 i flag=-Hlnt
	[[ "$proto" == udp ]] && flag=-Hlnu
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited during start-up"; }
		if [[ -n "$(ss "$flag" "src 127.0.0.1:$port" 2>/dev/null)" ]]; then
			return 0
		fi
		sleep 0.05
	done
	cat "$WORK/$name.log" >&2
	die "$name did not listen on $proto 127.0.0.1:$port within 10 s"
}

# --------------------------------------------------------------- prerequisites
need_tools sipp:sip-tester kamailio:kamailio taskset:util-linux chrt:util-linux ss:iproute2
PATH="$PATH:/usr/sbin:/sbin"
command -v go >/dev/null || die "needs Go (https://go.dev/dl/) on PATH"

# One descriptor per UDP flow in pbxgate (its upstream socket) and two per
# TLS connection (client + PBX side); siputil needs one per socket. Raise
# the limit as far as allowed; siputil measures fewer and the report
# extrapolates when it stays lower.
ulimit -n $((FLOWS + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

ncpu=$(nproc)
if [[ "$PIN" == 1 && $ncpu -ge 2 ]]; then
	GEN=(taskset -c 0 chrt -b 0)
	PROXY=(taskset -c 1)
	THREADS=1
	PINNING="sipp UAC and UAS (and siputil) on CPU 0 under SCHED_BATCH; the forwarder under test alone on CPU 1 (Kamailio children=1 plus its idle main/timer processes, pbxgate GOMAXPROCS=1)"
else
	GEN=()
	PROXY=()
	THREADS=$ncpu
	PINNING="none; Kamailio children=$THREADS, pbxgate GOMAXPROCS=$THREADS"
fi

WORK=$(mktemp -d /tmp/pbxgate-sip.XXXXXX)
mkdir -p "$WORK/bin" "$WORK/data" "$WORK/data-mem" "$WORK/kamailio" "$BENCH_DIR/results"
RAW="$WORK/raw.txt"
: >"$RAW"
put() { printf '%s\n' "$@" >>"$RAW"; }

# ---------------------------------------------------------------------- build
log "building into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/" ./bench/siputil)
WITH_PBX=1
if [[ "$PBXGATE_BIN" == none ]]; then
	WITH_PBX=0
	put "meta.pbxgate_note=PBXGATE_BIN=none: pbxgate was not measured"
	log "PBXGATE_BIN=none: running the direct and Kamailio cases only"
elif [[ -n "$PBXGATE_BIN" ]]; then
	cp "$PBXGATE_BIN" "$WORK/bin/pbxgate"
else
	(cd "$REPO" && go build -o "$WORK/bin/pbxgate" ./cmd/pbxgate)
fi
B="$WORK/bin"

read -r -d '' -a ports < <("$B/siputil" ports 7 && printf '\0')
UAS_PORT=${ports[0]} UAC_PORT=${ports[1]} KAM_PORT=${ports[2]} PBX_PORT=${ports[3]}
MEM_BACKEND=${ports[4]} PBX_MEM_PORT=${ports[5]} PBX_TLS_PORT=${ports[6]}

render "$SIPDIR/kamailio.cfg.in" "$WORK/kamailio.cfg" CHILDREN="$THREADS" KAM_PORT="$KAM_PORT" UAS_PORT="$UAS_PORT"
kamailio -c -f "$WORK/kamailio.cfg" >"$WORK/kamailio-check.log" 2>&1 ||
	{ cat "$WORK/kamailio-check.log" >&2; die "kamailio rejected $WORK/kamailio.cfg"; }
render "$SIPDIR/pbxgate.yaml.in" "$WORK/pbxgate.yaml" DATA_DIR="$WORK/data" PBX_PORT="$PBX_PORT" UAS_PORT="$UAS_PORT"
max_conns=$((TLS_CONNS > 10000 ? TLS_CONNS : 10000))
# Local addresses pbxgate opens its flows toward the stub PBX from: one
# address has only the ephemeral port range (28,232 ports by default).
nports=$(awk '{print $2 - $1 + 1}' /proc/sys/net/ipv4/ip_local_port_range)
UPSTREAM=()
for ((i = 1; i <= 250 && ${#UPSTREAM[@]} * nports < FLOWS + 1000; i++)); do
	UPSTREAM+=("127.0.0.$i")
done
upstream=$(IFS=,; echo "[${UPSTREAM[*]}]")
render "$SIPDIR/pbxgate-mem.yaml.in" "$WORK/pbxgate-mem.yaml" DATA_DIR="$WORK/data-mem" PBX_PORT="$PBX_MEM_PORT" \
	PBX_TLS_PORT="$PBX_TLS_PORT" BACKEND_PORT="$MEM_BACKEND" MAX_FLOWS="$FLOWS" MAX_CONNS="$max_conns" UPSTREAM="$upstream"
if ((WITH_PBX)); then
	"$B/pbxgate" check -c "$WORK/pbxgate.yaml" >/dev/null || die "pbxgate rejected $WORK/pbxgate.yaml"
	"$B/pbxgate" check -c "$WORK/pbxgate-mem.yaml" >/dev/null 2>&1 || die "pbxgate rejected $WORK/pbxgate-mem.yaml"
fi
{
	echo SEQUENTIAL
	for ((i = 1000; i < 2000; i++)); do echo "$i;"; done
} >"$WORK/users.csv"

wait_idle "$WAIT_IDLE"
pbx_version=n/a
((WITH_PBX)) && pbx_version=$("$B/pbxgate" version 2>/dev/null | head -1 | sed "s/^pbxgate //" || echo unknown)
put "meta.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"meta.cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
	"meta.cores=$ncpu" "meta.kernel=Linux $(uname -r)" \
	"meta.os=$(. /etc/os-release && echo "$PRETTY_NAME")" \
	"meta.go=$(go version | awk '{print $3}')" \
	"meta.sipp=SIPp $(sipp -v 2>&1 | sed -n 's/.*SIPp \(v[^ ]*\).*/\1/p' | head -1 | sed 's/\.$//')" \
	"meta.kamailio=Kamailio $(kamailio -v 2>&1 | awk 'NR==1{print $3}')" \
	"meta.kamailio_malloc=$KAM_MALLOC" \
	"meta.pbxgate_version=$pbx_version" "meta.commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
	"meta.pinning=$PINNING" "meta.loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" "meta.idle_before_pct=$(cpu_idle 2)" \
	"meta.nofile=$(ulimit -n)" "meta.step_secs=$STEP" "meta.start_rate=$START" "meta.max_rate=$MAX" \
	"meta.bisect=$BISECT" "meta.tries=$TRIES" "meta.recv_timeout_ms=$RECV_TIMEOUT"

# ------------------------------------------------------------------ rate steps
# cpu_ticks PID...: CPU time (user + system, in clock ticks) used so far by
# the processes PID and their children (Kamailio's receivers and timers).
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local pids=() p
	for p in "$@"; do
		pids+=("$p")
		pids+=($(pgrep -P "$p" || true))
	done
	for p in "${pids[@]}"; do
		cat "/proc/$p/stat" 2>/dev/null || true
	done | awk '{t += $14 + $15} END {print t + 0}'
}

# probe SCEN PORT RATE [PID...]: one sipp run of RATE x STEP calls at RATE/s
# to 127.0.0.1:PORT with a fresh UAS; sets P_LINE (siputil's SIPPSTAT line)
# and P_CPU (CPU seconds the forwarder PIDs used meanwhile), and succeeds
# when the run kept up.
P_LINE=""
P_CPU=""
# sipp's sockets get 1 MiB buffers instead of its default 64 KiB: with the
# default a few milliseconds' descheduling of one sipp overflowed the
# other's buffer and the harness, not the forwarder, lost datagrams.
SIPP_BUF=1048576
probe() {
	local scen=$1 port=$2 rate=$3 calls rc upid uas uac t0 t1
	shift 3
	calls=$((rate * STEP))
	local stat="$WORK/stat-$scen-$port-$rate.csv"
	rm -f "$stat"
	if [[ "$scen" == call ]]; then
		uas=(-sn uas)
		uac=(-sf "$SIPDIR/uac-call.xml" -s 34910000000)
	else
		uas=(-sf "$SIPDIR/uas-register.xml")
		uac=(-sf "$SIPDIR/uac-register.xml" -inf "$WORK/users.csv")
	fi
	start uas "${GEN[@]}" sipp "${uas[@]}" -i 127.0.0.1 -p "$UAS_PORT" -nostdin -buff_size "$SIPP_BUF"
	upid=$LAST_PID
	wait_listen udp "$UAS_PORT" "$upid" uas
	# -timeout: a run still going after STEP/0.95 + 1 s cannot keep up;
	# stopping it there bounds a failing step.
	rc=0
	t0=$(cpu_ticks "$@")
	timeout $((STEP * 2 + 30)) "${GEN[@]}" sipp "${uac[@]}" "127.0.0.1:$port" -i 127.0.0.1 -p "$UAC_PORT" \
		-m "$calls" -r "$rate" -nostdin -buff_size "$SIPP_BUF" -recv_timeout "$RECV_TIMEOUT" -timeout "$((STEP * 100 / 95 + 2))s" \
		-trace_stat -stf "$stat" -fd 1 >"$WORK/uac.log" 2>&1 || rc=$?
	t1=$(cpu_ticks "$@")
	P_CPU=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", (b - a) / hz}')
	stop "$upid"
	if ((rc > 1 && rc != 97 && rc != 99)) && [[ ! -s "$stat" ]]; then
		cat "$WORK/uac.log" >&2
		die "sipp failed (exit $rc) on $scen to port $port"
	fi
	P_LINE=$("$B/siputil" sippstat "$calls" "$rate" "$stat" 2>&1) || P_LINE="SIPPSTAT pass=0 error=${P_LINE//[$'\n= ']/_}"
	[[ "$P_LINE" == "SIPPSTAT pass=1 "* ]]
}

# field LINE KEY: the value of KEY=... in a SIPPSTAT/SIPMEM line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# smoke SCEN PORT NAME: a few calls at a low rate must all succeed.
smoke() {
	local scen=$1 port=$2 name=$3 save=$STEP
	STEP=2
	if probe "$scen" "$port" 10; then
		STEP=$save
		return 0
	fi
	STEP=$save
	log "$name: 20 $scen at 10/s did not all succeed: $P_LINE"
	return 1
}

# The search runs the cases in lockstep: every round gives each case its
# next rate, one after the other, so that a burst of load from something
# else on the machine hits the cases alike rather than one case's whole
# search. Per case (associative arrays, key CASE): PORT, FWD (the
# forwarder's PID, whose CPU time is recorded; empty for direct), LO (the
# highest rate that kept up), HI (the lowest that did not, 0: none yet),
# NEXT (the rate to try next, 0: done), STEPS, BEST and BEST_CPU (the
# SIPPSTAT line and forwarder CPU of the run at LO).
declare -A PORT FWD LO HI NEXT STEPS BEST BEST_CPU BIS

# try SCEN CASE RATE: up to TRIES runs; succeeds when one keeps up. A run
# that lost more than 5 % of its calls is not retried: that is no fluke.
try() {
	local scen=$1 case=$2 rate=$3 t failed fwd=()
	[[ -z "${FWD[$case]}" ]] || fwd=("${FWD[$case]}")
	for ((t = 1; t <= TRIES; t++)); do
		if probe "$scen" "${PORT[$case]}" "$rate" "${fwd[@]}"; then
			log "$scen $case $rate/s: kept up ($(field "$P_LINE" achieved)/s, $(field "$P_LINE" retrans) retrans${fwd:+, forwarder CPU $P_CPU s})"
			STEPS[$case]+=" $rate:ok"
			BEST[$case]=$P_LINE BEST_CPU[$case]=$P_CPU
			((${#fwd[@]} == 0)) || put "$scen.$case.cpu.$rate=$P_CPU"
			return 0
		fi
		failed=$(field "$P_LINE" failed)
		log "$scen $case $rate/s: did not keep up (try $t/$TRIES: ${failed:-?} failed, $(field "$P_LINE" achieved)/s)"
		STEPS[$case]+=" $rate:fail(${failed:-?}_failed,$(field "$P_LINE" achieved)/s)"
		[[ "$failed" =~ ^[0-9]+$ ]] && ((failed * 20 > rate * STEP)) && break
	done
	return 1
}

# search SCEN CASE...: the highest rate each case keeps up, in lockstep.
search() {
	local scen=$1 c rate mid round active
	shift
	put "$scen.idle_before_pct=$(cpu_idle 1)"
	for c in "$@"; do
		LO[$c]=0 HI[$c]=0 NEXT[$c]=$START STEPS[$c]="" BEST[$c]="" BEST_CPU[$c]=""
	done
	# Doubling, then BISECT bisections; a case is done when its next rate
	# is above MAX, its bisections are spent, or no integer rate is left
	# between LO and HI.
	for ((round = 0; ; round++)); do
		active=0
		for c in "$@"; do
			rate=${NEXT[$c]}
			((rate > 0)) || continue
			active=1
			if try "$scen" "$c" "$rate"; then LO[$c]=$rate; else HI[$c]=$rate; fi
			if ((HI[$c] == 0)); then
				NEXT[$c]=$((rate * 2))
				((NEXT[$c] <= MAX)) || NEXT[$c]=0
			else
				mid=$(((LO[$c] + HI[$c]) / 2))
				NEXT[$c]=0
				if ((mid > LO[$c] && mid < HI[$c])); then
					# bisections so far: rounds since the first failure
					BIS[$c]=$((${BIS[$c]:--1} + 1))
					((BIS[$c] >= BISECT)) || NEXT[$c]=$mid
				fi
			fi
		done
		((active)) || break
	done
	for c in "$@"; do
		put "$scen.$c.rate=${LO[$c]}" "$scen.$c.steps=${STEPS[$c]# }"
		((HI[$c] == 0)) || put "$scen.$c.fail_rate=${HI[$c]}"
		if [[ -n "${BEST[$c]}" ]]; then
			put "$scen.$c.achieved=$(field "${BEST[$c]}" achieved)" "$scen.$c.retrans=$(field "${BEST[$c]}" retrans)" \
				"$scen.$c.calls=$(field "${BEST[$c]}" ok)" "$scen.$c.secs=$(field "${BEST[$c]}" secs)"
			[[ -z "${FWD[$c]}" || -z "${BEST_CPU[$c]}" ]] || put "$scen.$c.cpu_secs=${BEST_CPU[$c]}"
		fi
	done
}

KAM_PID="" PBX_PID=""
if has_step call || has_step register; then
	if has_case kamailio; then
		start kamailio "${PROXY[@]}" kamailio -DD -E -x "$KAM_MALLOC" -f "$WORK/kamailio.cfg" \
			-P "$WORK/kamailio/kamailio.pid" -Y "$WORK/kamailio" -w "$WORK/kamailio"
		KAM_PID=$LAST_PID
		wait_listen udp "$KAM_PORT" "$KAM_PID" kamailio
	fi
	if ((WITH_PBX)) && has_case pbxgate; then
		start pbxgate "${PROXY[@]}" env GOMAXPROCS="$THREADS" "$B/pbxgate" serve -c "$WORK/pbxgate.yaml"
		PBX_PID=$LAST_PID
		wait_listen udp "$PBX_PORT" "$PBX_PID" pbxgate
	fi
	# The smoke test doubles as a warm-up for every case.
	for scen in call register; do
		has_step "$scen" || continue
		has_case direct && { smoke "$scen" "$UAS_PORT" direct || die "sipp UAC -> UAS does not work"; }
		[[ -n "$KAM_PID" ]] && { smoke "$scen" "$KAM_PORT" kamailio || die "Kamailio does not forward"; }
		if [[ -n "$PBX_PID" ]] && ! smoke "$scen" "$PBX_PORT" pbxgate; then
			put "meta.pbxgate_note=pbxgate did not relay SIP over UDP (smoke test: $P_LINE); its rows are missing"
			log "pbxgate does not relay SIP: measuring the other cases only"
			stop "$PBX_PID"
			PBX_PID=""
			WITH_PBX=0
		fi
	done
	for scen in call register; do
		has_step "$scen" || continue
		cases=()
		has_case direct && { cases+=(direct); PORT[direct]=$UAS_PORT FWD[direct]=""; }
		[[ -n "$KAM_PID" ]] && { cases+=(kamailio); PORT[kamailio]=$KAM_PORT FWD[kamailio]=$KAM_PID; }
		[[ -n "$PBX_PID" ]] && { cases+=(pbxgate); PORT[pbxgate]=$PBX_PORT FWD[pbxgate]=$PBX_PID; }
		BIS=()
		((${#cases[@]} == 0)) || search "$scen" "${cases[@]}"
	done
	[[ -n "$KAM_PID" ]] && stop "$KAM_PID"
	[[ -n "$PBX_PID" ]] && stop "$PBX_PID"
	KAM_PID="" PBX_PID=""
fi

# ------------------------------------------------------------------ memory
# mem_case KIND N PORT: fresh pbxgate, N flows/connections, its memory.
mem_case() {
	local kind=$1 n=$2 port=$3 line kv
	rm -rf "$WORK/data-mem" && mkdir -p "$WORK/data-mem"
	start pbxgate-mem "${PROXY[@]}" env GOMAXPROCS="$THREADS" "$B/pbxgate" serve -c "$WORK/pbxgate-mem.yaml"
	PBX_PID=$LAST_PID
	wait_listen udp "$PBX_MEM_PORT" "$PBX_PID" pbxgate-mem
	wait_listen tcp "$PBX_TLS_PORT" "$PBX_PID" pbxgate-mem
	sleep 1
	log "mem: $kind, $n through pbxgate"
	timeout 600 "${GEN[@]}" "$B/siputil" "$kind" -target "127.0.0.1:$port" -pid "$PBX_PID" -n "$n" \
		>"$WORK/mem-$kind.txt" 2>&1 || { cat "$WORK/mem-$kind.txt" >&2; die "siputil $kind failed"; }
	line=$(grep -m1 '^SIPMEM ' "$WORK/mem-$kind.txt") || { cat "$WORK/mem-$kind.txt" >&2; die "no SIPMEM line"; }
	for kv in ${line#SIPMEM }; do
		put "mem.$kind.$kv"
	done
	stop "$PBX_PID"
	PBX_PID=""
}
if has_step mem && ((WITH_PBX)); then
	put "meta.idle_before_mem_pct=$(cpu_idle 1)" "mem.udp.upstream_addresses=${#UPSTREAM[@]}"
	start backend "${GEN[@]}" "$B/siputil" backend -addr "127.0.0.1:$MEM_BACKEND"
	BACKEND_PID=$LAST_PID
	wait_listen udp "$MEM_BACKEND" "$BACKEND_PID" backend
	mem_case udp "$FLOWS" "$PBX_MEM_PORT"
	mem_case tls "$TLS_CONNS" "$PBX_TLS_PORT"
	stop "$BACKEND_PID"
fi

# ------------------------------------------------------------------ report
report_and_exit "$B/siputil" sip
