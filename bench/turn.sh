#!/usr/bin/env bash
# bench/turn.sh: pbxgate's STUN/TURN server over UDP side by side with
# coturn (Debian's coturn), same realm, REST secret and loopback peer rule,
# in the same run.
# Targets: pbxgate >= coturn in STUN Binding requests/s, allocations/s,
# relayed packets/s and concurrent G.711-like streams sustained at < 0.1 %
# loss. Reported: RSS per 1,000 allocations.
# What is measured and how to read it: docs/BENCHMARKS.md, section TURN.
#
#   bash bench/turn.sh           # about 8-10 minutes with the defaults
#
# Not part of the test suite. Needs Go; installs coturn, taskset
# (util-linux) and ss (iproute2) with apt-get when they are missing. Builds
# pbxgate, bench/turnload (the load generator) and bench/siputil (for free
# ports) into a temporary directory, picks free loopback ports, and stops
# every process it started on exit. Results: a table on stdout and in
# bench/results/turn-latest.txt, the same as JSON in
# bench/results/turn-latest.json. Exit status 0 when the targets are met, 1
# when not (the results are written either way), other on failure.
#
# Steps (BENCH_TURN_STEPS), all over UDP with REST credentials
# ("<expiry>:u<i>", 1,000 users in turn); how each is measured is in
# bench/turnload/main.go and the mode's file there:
#   binding   STUN Binding requests/s: 16 client sockets, each keeping 32
#             requests outstanding (closed loop; a request unanswered for
#             100 ms counts as lost and its place in the window is reused).
#             512 outstanding keep a server busy despite the wake-up
#             latency between the two CPUs; they exceed a 208 KiB (kernel
#             default) socket receive buffer, so a server that keeps the
#             default drops some, which shows as lost and in
#             drops_server_listener (the kernel's count, /proc/net/udp)
#   alloc     allocations/s: 32 clients in parallel, each repeating
#             Allocate (401 challenge, then with MESSAGE-INTEGRITY) and
#             Refresh(lifetime 0) from a fresh socket
#   relay     relayed packets/s: 32 allocations, each with a channel to an
#             echo peer on 127.0.0.1 run by turnload, 16 172-byte packets
#             outstanding each (closed loop, as binding); both crossings of
#             the server count (client -> peer and peer -> client)
#   streams   concurrent G.711-like streams: a 172-byte payload every 20 ms
#             per stream, through a channel to the echo peer and back (a
#             call's two directions), on a fixed schedule (open loop); the
#             highest stream count with < 0.1 % of the packets of a
#             BENCH_TURN_STREAMS_WINDOW-second window lost
#   mem       a fresh server per case: VmRSS idle, then with 1,000 and 5,000
#             allocations held (each with a channel); RSS per 1,000
#
# The throughput steps (binding, alloc, relay) run BENCH_TURN_ROUNDS rounds;
# each round measures every case once, the order alternating between rounds;
# the median counts. The streams search doubles the stream count from
# BENCH_TURN_STREAMS_START while the loss stays under 0.1 %, then bisects
# BENCH_TURN_STREAMS_BISECT times; the cases take turns at every round of
# the search. A count that fails with less than 1 % loss, or because the
# load generator fell behind its own schedule, is tried again (up to
# BENCH_TURN_STREAMS_TRIES runs). Every run records the server's CPU time,
# the generator's, and what the rest of the machine used meanwhile
# (other_cpu; with pinning, other_cpu_server: what others took from the
# server's own CPU). A throughput run in which others took more than 10 % of
# the server's CPU is disturbed and run again, up to BENCH_TURN_RETRIES
# times; a failed streams run is tried again when it was disturbed. The
# report warns about disturbed runs that remain, and compares the servers'
# CPU per operation, which tells them apart even where the harness is the
# limit.
#
# Knobs (environment):
#   BENCH_TURN_STEPS="binding alloc relay streams mem"  which steps to run
#   BENCH_TURN_CASES="coturn pbxgate"  which servers
#   BENCH_TURN_ROUNDS=5          rounds of the throughput steps
#   BENCH_TURN_DURATION=4        measured seconds per throughput run (after 1 s warm-up)
#   BENCH_TURN_STREAMS_START=250 first stream count
#   BENCH_TURN_STREAMS_MAX=16000 highest stream count tried
#   BENCH_TURN_STREAMS_BISECT=3  bisections after the first count that fails
#   BENCH_TURN_STREAMS_TRIES=2   runs per count before it counts as failed
#   BENCH_TURN_STREAMS_WINDOW=10 measured seconds per stream run (after 2 s warm-up)
#   BENCH_TURN_MEM_LEVELS=1000,5000  allocations held in the memory step
#   BENCH_TURN_RETRIES=2         extra runs of a throughput run that was disturbed
#   BENCH_PIN=1                  1: turnload (clients and echo peer) on CPU 0 with
#                                GOMAXPROCS=1, the server under test alone on CPU 1
#                                (pbxgate GOMAXPROCS=1, coturn relay-threads=1); 0: no
#                                pinning, one thread per CPU
#   BENCH_NICE=0                 nice value for the servers and turnload alike (e.g. -5
#                                as root on a machine others keep busy); 0: unchanged
#   PBXGATE_BIN=path             use a prebuilt pbxgate instead of building ./cmd/pbxgate;
#                                "none" measures coturn only
#   BENCH_KEEP=1                 keep the temporary directory (configs, logs, raw lines)
#   BENCH_WAIT_IDLE=0            wait up to this many seconds for the CPUs to be
#                                >= 90 % idle before starting (shared machines)
#
# Pinning (BENCH_PIN=1, the default). On 2 cores the load generator competes
# with the server; pinning charges the server only for its own CPU: it models
# a one-core TURN server. On loopback the kernel's work to deliver a datagram
# is mostly done on the sending CPU, so each side also pays for part of the
# other's receiving. coturn keeps its listener and auth threads besides the
# one relay thread, all on CPU 1. The relay ports of the two servers are
# separate ranges below the kernel's ephemeral range, where the generator's
# client sockets live.
set -euo pipefail

STEPS=${BENCH_TURN_STEPS:-binding alloc relay streams mem}
CASES=${BENCH_TURN_CASES:-coturn pbxgate}
ROUNDS=${BENCH_TURN_ROUNDS:-5}
DURATION=${BENCH_TURN_DURATION:-4}
S_START=${BENCH_TURN_STREAMS_START:-250}
S_MAX=${BENCH_TURN_STREAMS_MAX:-16000}
S_BISECT=${BENCH_TURN_STREAMS_BISECT:-3}
S_TRIES=${BENCH_TURN_STREAMS_TRIES:-2}
S_WINDOW=${BENCH_TURN_STREAMS_WINDOW:-10}
MEM_LEVELS=${BENCH_TURN_MEM_LEVELS:-1000,5000}
RETRIES=${BENCH_TURN_RETRIES:-2}
PIN=${BENCH_PIN:-1}
NICE=${BENCH_NICE:-0}
KEEP=${BENCH_KEEP:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
TURNDIR="$BENCH_DIR/turn"
REALM=bench.example.org

log() { printf '%s turn: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
has_step() { [[ " $STEPS " == *" $1 "* ]]; }
has_case() { [[ " $CASES " == *" $1 "* ]]; }
posint() { [[ "$2" =~ ^[1-9][0-9]*$ ]] || die "$1 must be a positive integer, got '$2'"; }
posint BENCH_TURN_ROUNDS "$ROUNDS"
posint BENCH_TURN_DURATION "$DURATION"
posint BENCH_TURN_STREAMS_START "$S_START"
posint BENCH_TURN_STREAMS_MAX "$S_MAX"
posint BENCH_TURN_STREAMS_TRIES "$S_TRIES"
posint BENCH_TURN_STREAMS_WINDOW "$S_WINDOW"
[[ "$RETRIES" =~ ^[0-9]+$ ]] || die "BENCH_TURN_RETRIES must be a number, got '$RETRIES'"
[[ "$NICE" =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be a number, got '$NICE'"
[[ "$S_BISECT" =~ ^[0-9]+$ ]] || die "BENCH_TURN_STREAMS_BISECT must be a number, got '$S_BISECT'"
[[ "$MEM_LEVELS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)*$ ]] || die "BENCH_TURN_MEM_LEVELS must be counts separated by commas, got '$MEM_LEVELS'"
for c in $CASES; do [[ "$c" == coturn || "$c" == pbxgate ]] || die "BENCH_TURN_CASES: unknown case '$c'"; done
for s in $STEPS; do [[ " binding alloc relay streams mem " == *" $s "* ]] || die "BENCH_TURN_STEPS: unknown step '$s'"; done

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
LAST_PID=""
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh" # cleanup, stop_wait, start, stop, render, cpu_idle, wait_idle, need_tools, report_and_exit

trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_udp PORT PID NAME: wait up to 10 s until PID listens on UDP
# 127.0.0.1:PORT, then check that no other process listens there too:
# coturn binds with SO_REUSEPORT, so a port taken by another coturn would
# not fail its start but split the datagrams between the two.
wait_udp() {
	local port=$1 pid=$2 name=$3 i owners
	for ((i = 0; i < 200; i++)); do
		kill -0 "$pid" 2>/dev/null || { tail -20 "$WORK/$name.log" >&2; die "$name exited during start-up"; }
		if [[ -n "$(ss -Hlnu "src 127.0.0.1:$port" 2>/dev/null)" ]]; then
			owners=$(ss -Hlnup "src 127.0.0.1:$port" | grep -o 'pid=[0-9]*' | sort -u | sed 's/pid=//' | tr '\n' ' ')
			[[ "$owners" == "$pid " || -z "$owners" ]] || die "UDP 127.0.0.1:$port is shared by processes $owners(not only $name, $pid): pick other ports"
			return 0
		fi
		sleep 0.05
	done
	tail -20 "$WORK/$name.log" >&2
	die "$name did not listen on UDP 127.0.0.1:$port within 10 s"
}

# --------------------------------------------------------------- prerequisites
need_tools turnserver:coturn taskset:util-linux ss:iproute2
PATH="$PATH:/usr/sbin:/sbin"
command -v go >/dev/null || die "needs Go (https://go.dev/dl/) on PATH"

# The memory step holds up to the highest level of allocations: a socket
# each in turnload and one relay socket each in the server.
max_level=${MEM_LEVELS##*,}
ulimit -n $((max_level * 2 + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# Relay ports: two ranges of 15,360 below the kernel's ephemeral range,
# where turnload's client sockets (and anyone's unbound sockets) get their
# ports, so a relay never collides with a client. The allocation step needs
# the room: coturn keeps a deleted allocation's relay port for a while, and
# with 8,192 ports it answered 508 (cannot create socket) at 6,000
# allocations/s.
read -r eph_lo _ </proc/sys/net/ipv4/ip_local_port_range
((eph_lo > 30720 + 1024)) || die "the ephemeral port range starts at $eph_lo: no room for the relay ranges below it"
COTURN_RELAY_MIN=$((eph_lo - 30720)) COTURN_RELAY_MAX=$((eph_lo - 15361))
PBX_RELAY_MIN=$((eph_lo - 15360)) PBX_RELAY_MAX=$((eph_lo - 1))
((max_level <= 15360)) || log "WARNING: $max_level allocations need more relay ports than the 15,360 of each range"

# turnload is a single process: unlike sipp's UAC and UAS in bench/sip.sh
# it needs no SCHED_BATCH, which only delayed its pacer's wake-ups behind
# other processes on a shared machine.
ncpu=$(nproc)
if [[ "$PIN" == 1 && $ncpu -ge 2 ]]; then
	GEN=(taskset -c 0 env GOMAXPROCS=1)
	SRV=(taskset -c 1)
	SRV_CPUS=(-server-cpus 1)
	THREADS=1
	PINNING="turnload (clients and echo peer) on CPU 0, GOMAXPROCS=1; the server under test alone on CPU 1 (pbxgate GOMAXPROCS=1; coturn relay-threads=1 plus its listener and auth threads)"
else
	GEN=()
	SRV=()
	SRV_CPUS=()
	THREADS=$ncpu
	PINNING="none; pbxgate GOMAXPROCS=$THREADS, coturn relay-threads=$THREADS"
fi
if [[ "$NICE" != 0 ]]; then
	GEN=(nice -n "$NICE" "${GEN[@]}")
	SRV=(nice -n "$NICE" "${SRV[@]}")
	PINNING+="; servers and turnload at nice $NICE"
fi

WORK=$(mktemp -d /tmp/pbxgate-turn.XXXXXX)
mkdir -p "$WORK/bin" "$WORK/data" "$BENCH_DIR/results"
RAW="$WORK/raw.txt"
: >"$RAW"
put() { printf '%s\n' "$@" >>"$RAW"; }

# ---------------------------------------------------------------------- build
log "building into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/" ./bench/turnload ./bench/siputil)
WITH_PBX=1
if [[ "$PBXGATE_BIN" == none ]] || ! has_case pbxgate; then
	WITH_PBX=0
	[[ "$PBXGATE_BIN" == none ]] && put "meta.pbxgate_note=PBXGATE_BIN=none: pbxgate was not measured"
elif [[ -n "$PBXGATE_BIN" ]]; then
	cp "$PBXGATE_BIN" "$WORK/bin/pbxgate"
else
	(cd "$REPO" && go build -o "$WORK/bin/pbxgate" ./cmd/pbxgate)
fi
WITH_COTURN=0
has_case coturn && WITH_COTURN=1
B="$WORK/bin"

read -r -d '' -a ports < <("$B/siputil" ports 2 && printf '\0')
COTURN_PORT=${ports[0]} PBX_PORT=${ports[1]}
SECRET=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

render "$TURNDIR/turnserver.conf.in" "$WORK/turnserver.conf" PORT="$COTURN_PORT" RELAY_MIN="$COTURN_RELAY_MIN" \
	RELAY_MAX="$COTURN_RELAY_MAX" THREADS="$THREADS" REALM="$REALM" SECRET="$SECRET" WORK="$WORK"
render "$TURNDIR/pbxgate.yaml.in" "$WORK/pbxgate.yaml" DATA_DIR="$WORK/data" PORT="$PBX_PORT" REALM="$REALM" \
	RELAY_MIN="$PBX_RELAY_MIN" RELAY_MAX="$PBX_RELAY_MAX" SECRET="$SECRET"
if ((WITH_PBX)); then
	"$B/pbxgate" check -c "$WORK/pbxgate.yaml" >"$WORK/pbxgate-check.log" 2>&1 ||
		{ cat "$WORK/pbxgate-check.log" >&2; die "pbxgate rejected $WORK/pbxgate.yaml"; }
fi

wait_idle "$WAIT_IDLE"
pbx_version=n/a
((WITH_PBX)) && pbx_version=$("$B/pbxgate" version 2>/dev/null | head -1 | sed "s/^pbxgate //" || echo unknown)
put "meta.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"meta.cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
	"meta.cores=$ncpu" "meta.kernel=Linux $(uname -r)" \
	"meta.os=$(. /etc/os-release && echo "$PRETTY_NAME")" \
	"meta.go=$(go version | awk '{print $3}')" \
	"meta.coturn=$(turnserver --version 2>/dev/null | head -1 || echo unknown)" \
	"meta.pbxgate_version=$pbx_version" "meta.commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)" \
	"meta.pinning=$PINNING" "meta.loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" "meta.idle_before_pct=$(cpu_idle 2)" \
	"meta.rounds=$ROUNDS" "meta.duration=$DURATION" "meta.retries=$RETRIES" "meta.streams_start=$S_START" "meta.streams_max=$S_MAX" \
	"meta.streams_bisect=$S_BISECT" "meta.streams_tries=$S_TRIES" "meta.streams_window=$S_WINDOW" \
	"meta.mem_levels=$MEM_LEVELS" "meta.relay_ports=coturn $COTURN_RELAY_MIN-$COTURN_RELAY_MAX, pbxgate $PBX_RELAY_MIN-$PBX_RELAY_MAX"

# ------------------------------------------------------------------ servers
declare -A PORT SPID
PORT[coturn]=$COTURN_PORT PORT[pbxgate]=$PBX_PORT

# start_server CASE [NAME]: start the server of CASE (log NAME.log); sets
# SPID[CASE].
start_server() {
	local c=$1 name=${2:-$1}
	if [[ "$c" == coturn ]]; then
		rm -f "$WORK/turndb"
		start "$name" "${SRV[@]}" turnserver -c "$WORK/turnserver.conf"
	else
		rm -rf "$WORK/data" && mkdir -p "$WORK/data"
		start "$name" "${SRV[@]}" env GOMAXPROCS="$THREADS" "$B/pbxgate" serve -c "$WORK/pbxgate.yaml"
	fi
	SPID[$c]=$LAST_PID
	wait_udp "${PORT[$c]}" "$LAST_PID" "$name"
}

# turnload MODE CASE ARGS...: one turnload run against CASE's server; sets
# T_LINE (its TURNLOAD line without the prefix) and succeeds when it ran.
T_LINE=""
turnload() {
	local mode=$1 c=$2 out rc=0
	shift 2
	out="$WORK/turnload-$mode-$c.log"
	timeout 300 "${GEN[@]}" "$B/turnload" "$mode" -server "127.0.0.1:${PORT[$c]}" -pid "${SPID[$c]}" \
		-realm "$REALM" -secret "$SECRET" "${SRV_CPUS[@]}" "$@" >"$out" 2>&1 || rc=$?
	cat "$out" >>"$WORK/turnload.log"
	T_LINE=$(sed -n 's/^TURNLOAD //p' "$out" | tail -1)
	if ((rc != 0)) || [[ -z "$T_LINE" ]]; then
		T_LINE="error=$(tail -1 "$out" | tr ' =' '_:' | cut -c1-300)"
		return 1
	fi
}

# field LINE KEY: the value of KEY=... in a TURNLOAD line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }

# disturbed LINE: whether other processes took more than 10 % of the
# server's CPU (pinned) or of one CPU (not pinned) during the run.
disturbed() {
	local o secs
	o=$(field "$1" other_cpu_server)
	[[ -n "$o" ]] || o=$(field "$1" other_cpu)
	secs=$(field "$1" secs)
	[[ -n "$o" && -n "$secs" ]] && awk -v o="$o" -v s="$secs" 'BEGIN{exit !(s > 0 && o / s > 0.10)}'
}

# others LINE: what others used during the run, for the log.
others() {
	local o
	o=$(field "$1" other_cpu_server)
	[[ -n "$o" ]] && echo "others on its CPU $o s" || echo "others $(field "$1" other_cpu) s"
}

# putline PREFIX LINE: every key=value of LINE as PREFIX.key=value.
putline() {
	local kv
	for kv in $2; do
		put "$1.$kv"
	done
}

ACTIVE=()
if has_step binding || has_step alloc || has_step relay || has_step streams; then
	((WITH_COTURN)) && { start_server coturn; ACTIVE+=(coturn); }
	((WITH_PBX)) && { start_server pbxgate; ACTIVE+=(pbxgate); }
	# Smoke test and warm-up: a short relay run through every server.
	for c in "${ACTIVE[@]}"; do
		if ! turnload relay "$c" -allocs 4 -window 4 -warmup 0 -duration 1s; then
			[[ "$c" == pbxgate ]] || die "coturn does not relay: $T_LINE (see $WORK/coturn.log)"
			put "meta.pbxgate_note=pbxgate did not relay TURN (smoke test: $T_LINE); its rows are missing"
			log "pbxgate does not relay TURN: $T_LINE; measuring coturn only"
			stop "${SPID[pbxgate]}"
			ACTIVE=("${ACTIVE[@]/pbxgate/}")
			WITH_PBX=0
		fi
	done
	read -r -a ACTIVE <<<"${ACTIVE[*]}"
fi

# ------------------------------------------------------------- throughput
# args for each throughput mode.
declare -A MODE_ARGS
MODE_ARGS[binding]="-sockets 16 -window 32"
MODE_ARGS[alloc]="-concurrency 32"
MODE_ARGS[relay]="-allocs 32 -window 16 -size 172"
for step in binding alloc relay; do
	has_step "$step" && ((${#ACTIVE[@]})) || continue
	put "$step.idle_before_pct=$(cpu_idle 1)" "$step.args=${MODE_ARGS[$step]}"
	for ((r = 1; r <= ROUNDS; r++)); do
		order=("${ACTIVE[@]}")
		((r % 2 == 0)) && order=($(printf '%s\n' "${ACTIVE[@]}" | tac))
		for c in "${order[@]}"; do
			for ((a = 0; a <= RETRIES; a++)); do
				# shellcheck disable=SC2086
				if turnload "$step" "$c" ${MODE_ARGS[$step]} -warmup 1s -duration "${DURATION}s"; then
					log "$step $c round $r: $(field "$T_LINE" rate)/s (server CPU $(field "$T_LINE" server_cpu) s, generator $(field "$T_LINE" gen_cpu) s, $(others "$T_LINE"))"
				else
					log "$step $c round $r failed: $T_LINE"
				fi
				disturbed "$T_LINE" && ((a < RETRIES)) || break
				log "$step $c round $r was disturbed: again"
			done
			putline "$step.$c.r$r" "$T_LINE"
			put "$step.$c.r$r.retries=$a"
		done
	done
done

# ---------------------------------------------------------------- streams
# The search runs the cases in lockstep, as bench/sip.sh's: every round
# gives each case its next count. Per case: LO (highest count that passed),
# HI (lowest that failed, 0: none yet), NEXT (0: done), STEPS, BEST (the
# line of the run at LO), BIS (bisections so far).
declare -A LO HI NEXT STEPLOG BEST BIS FAILED FAILED_AT

# try_streams CASE N: up to S_TRIES runs; succeeds when one passes.
try_streams() {
	local c=$1 n=$2 t loss late
	for ((t = 1; t <= S_TRIES; t++)); do
		if turnload streams "$c" -n "$n" -warmup 2s -duration "${S_WINDOW}s" && [[ "$(field "$T_LINE" pass)" == 1 ]]; then
			log "streams $c $n: passed (loss $(field "$T_LINE" loss_pct) %, rtt p99 $(field "$T_LINE" rtt_p99_ms) ms, server CPU $(field "$T_LINE" server_cpu) s, generator $(field "$T_LINE" gen_cpu) s)"
			STEPLOG[$c]+=" $n:ok($(field "$T_LINE" loss_pct)%)"
			BEST[$c]=$T_LINE
			return 0
		fi
		loss=$(field "$T_LINE" loss_pct) late=$(field "$T_LINE" harness_late)
		dist=0
		disturbed "$T_LINE" && dist=1
		log "streams $c $n: failed (try $t/$S_TRIES: loss ${loss:-?} %, generator late ${late:-?}, $(others "$T_LINE")$(field "$T_LINE" error))"
		STEPLOG[$c]+=" $n:fail(${loss:-error}%${late:+,late=$late}$( ((dist)) && echo ,disturbed))"
		# Retry only what may be a fluke: under 1 % lost, the generator
		# (not the server) fell behind, or others took the server's CPU.
		[[ "$late" == 1 || "$dist" == 1 ]] || awk -v l="${loss:-100}" 'BEGIN{exit !(l < 1)}' || break
	done
	FAILED[$c]=$T_LINE
	return 1
}

if has_step streams && ((${#ACTIVE[@]})); then
	put "streams.idle_before_pct=$(cpu_idle 1)"
	for c in "${ACTIVE[@]}"; do
		LO[$c]=0 HI[$c]=0 NEXT[$c]=$S_START STEPLOG[$c]="" BEST[$c]="" BIS[$c]=-1 FAILED[$c]="" FAILED_AT[$c]=""
	done
	for ((round = 0; round < 64; round++)); do
		active=0
		for c in "${ACTIVE[@]}"; do
			n=${NEXT[$c]}
			((n > 0)) || continue
			active=1
			if try_streams "$c" "$n"; then LO[$c]=$n; else HI[$c]=$n FAILED_AT[$c]=${FAILED[$c]}; fi
			if ((HI[$c] == 0)); then
				NEXT[$c]=$((n * 2))
				((NEXT[$c] <= S_MAX)) || NEXT[$c]=0
			else
				mid=$(((LO[$c] + HI[$c]) / 2))
				NEXT[$c]=0
				if ((mid > LO[$c] && mid < HI[$c])); then
					BIS[$c]=$((BIS[$c] + 1))
					((BIS[$c] >= S_BISECT)) || NEXT[$c]=$mid
				fi
			fi
		done
		((active)) || break
	done
	for c in "${ACTIVE[@]}"; do
		put "streams.$c.n=${LO[$c]}" "streams.$c.steps=${STEPLOG[$c]# }"
		((HI[$c] == 0)) || put "streams.$c.fail_n=${HI[$c]}"
		[[ -z "${BEST[$c]}" ]] || putline "streams.$c.best" "${BEST[$c]}"
		[[ -z "${FAILED_AT[$c]:-}" ]] || putline "streams.$c.fail" "${FAILED_AT[$c]}"
	done
fi

for c in "${ACTIVE[@]}"; do
	stop "${SPID[$c]}"
done

# ------------------------------------------------------------------ memory
if has_step mem; then
	put "mem.idle_before_pct=$(cpu_idle 1)"
	cases=()
	((WITH_COTURN)) && cases+=(coturn)
	((WITH_PBX)) && cases+=(pbxgate)
	for c in "${cases[@]}"; do
		start_server "$c" "$c-mem"
		sleep 1
		log "mem: $c with $MEM_LEVELS allocations"
		if turnload mem "$c" -levels "$MEM_LEVELS" -settle 2s; then
			putline "mem.$c" "$T_LINE"
		else
			log "mem $c failed: $T_LINE"
			put "mem.$c.error=$(field " $T_LINE" error)"
		fi
		stop "${SPID[$c]}"
	done
fi

# ------------------------------------------------------------------ report
report_and_exit "$B/turnload" turn
