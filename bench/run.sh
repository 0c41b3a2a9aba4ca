#!/usr/bin/env bash
# bench/run.sh: side-by-side benchmarks of pbxgate and HAProxy on loopback.
# What each step measures and how to read the output: docs/BENCHMARKS.md.
#
#   bash bench/run.sh            # about 3-4 minutes with the defaults
#
# Not part of the test suite. Needs Go; installs wrk, haproxy and curl with
# apt-get when they are missing (Debian 12). Builds everything into a
# temporary directory, picks free loopback ports, and stops every process it
# started on exit. Results: a table on stdout and in bench/results/latest.txt,
# the same numbers as JSON in bench/results/latest.json.
#
# Knobs (environment):
#   BENCH_DURATION=10s      wrk throughput run per case
#   BENCH_LAT_DURATION=5s   wrk -c1 latency run per case
#   BENCH_CONNS=64          wrk connections for the throughput run
#   BENCH_RATE_DURATION=10s constant-rate run per case (after BENCH_RATE_WARMUP=2s)
#   BENCH_RATE_FRACTION=0.5 constant rate as a fraction of pbxgate's peak req/s
#   BENCH_RATE_FRACTION2=0.25 a second, lower rate (empty: none) where a 2-core harness still keeps up
#   BENCH_TCP_BYTES=4294967296  bytes per TCP relay transfer (each direction)
#   BENCH_TCP_REPEAT=3      transfers per case and direction; the best counts
#   BENCH_TCP_CC=           run the relay step with this TCP congestion control
#                           (net.ipv4.tcp_congestion_control, restored after the
#                           step; empty: the machine's own, recorded either way)
#   BENCH_IDLE_CONNS=10000  idle TLS connections for the memory step
#   BENCH_IDLE_MEMLIMIT=250MiB  also measure pbxgate run with this GOMEMLIMIT
#                           in the memory step ("" skips that row)
#   BENCH_PIN=1             pin load tools + origins to CPU 0 and the proxy to
#                           CPU 1 (proxy gets 1 thread); 0: no pinning, the
#                           proxy gets one thread per CPU
#   BENCH_ORIGIN=fast       origin HTTP server: fast (minimal responder) or std (net/http)
#   BENCH_GO=1              also run the routing-path Go micro-benchmarks
#   BENCH_STEPS="http rate tcp idle"   which steps to run
#   PBXGATE_BIN=path        use a prebuilt pbxgate instead of building ./cmd/pbxgate;
#                           "none" runs only the direct and HAProxy cases
#   BENCH_KEEP=1            keep the temporary directory (configs, logs)
#   BENCH_WAIT_IDLE=0       wait up to this many seconds for the CPUs to be
#                           >= 90 % idle before starting (shared machines)
set -euo pipefail

DUR=${BENCH_DURATION:-10s}
LAT_DUR=${BENCH_LAT_DURATION:-5s}
CONNS=${BENCH_CONNS:-64}
RATE_DUR=${BENCH_RATE_DURATION:-10s}
RATE_WARMUP=${BENCH_RATE_WARMUP:-2s}
RATE_FRACTION=${BENCH_RATE_FRACTION:-0.5}
RATE_FRACTION2=${BENCH_RATE_FRACTION2-0.25}
TCP_BYTES=${BENCH_TCP_BYTES:-4294967296}
TCP_REPEAT=${BENCH_TCP_REPEAT:-3}
TCP_CC=${BENCH_TCP_CC:-}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
IDLE_MEMLIMIT=${BENCH_IDLE_MEMLIMIT-250MiB}
PIN=${BENCH_PIN:-1}
ORIGIN_MODE=${BENCH_ORIGIN:-fast}
GOBENCH=${BENCH_GO:-1}
STEPS=${BENCH_STEPS:-http rate tcp idle}
KEEP=${BENCH_KEEP:-0}
WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
PBXGATE_BIN=${PBXGATE_BIN:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has_step() { [[ " $STEPS " == *" $1 "* ]]; }

# ---------------------------------------------------------------- processes
PIDS=()
WORK=""
LAST_PID=""
# shellcheck source=lib.sh
. "$BENCH_DIR/lib.sh" # cleanup, stop_wait, start, stop, render, cpu_idle, wait_idle, need_tools

# The relay step may switch the machine's TCP congestion control
# (BENCH_TCP_CC); CC_RESTORE holds the algorithm to put back on any exit.
CC_RESTORE=
CC_SYSCTL=/proc/sys/net/ipv4/tcp_congestion_control
restore_cc() {
	if [[ -n "$CC_RESTORE" ]]; then
		echo "$CC_RESTORE" >"$CC_SYSCTL" || log "could not restore tcp_congestion_control $CC_RESTORE"
		CC_RESTORE=
	fi
}
trap 'restore_cc; cleanup' EXIT
trap 'exit 130' INT TERM

# wait_port PORT PID NAME: wait up to 10 s until 127.0.0.1:PORT accepts.
wait_port() {
	local port=$1 pid=$2 name=$3 i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited during start-up"; }
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	cat "$WORK/$name.log" >&2
	die "$name did not listen on 127.0.0.1:$port within 10 s"
}

# --------------------------------------------------------------- prerequisites
need_tools wrk:wrk haproxy:haproxy curl:curl taskset:util-linux chrt:util-linux
command -v go >/dev/null || die "needs Go (https://go.dev/dl/) on PATH"

# Each proxied connection needs two descriptors; HAProxy wants 2 x maxconn.
MAXCONN=$((IDLE_CONNS + 2000))
ulimit -n $((MAXCONN * 2 + 1024 > 65536 ? MAXCONN * 2 + 1024 : 65536)) 2>/dev/null ||
	ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= IDLE_CONNS + 1024)) || die "open-file limit $(ulimit -n) too low for $IDLE_CONNS connections (ulimit -n)"

ncpu=$(nproc)
if [[ "$PIN" == 1 && $ncpu -ge 2 ]]; then
	# SCHED_BATCH: the load tools and the origins share CPU 0, and without
	# it each request's wake-up of the other side preempted the writer
	# (two involuntary context switches per request, tens of thousands per
	# second); the harness core then saturated near 22k req/s and its own
	# tail swamped the proxies'. Batch tasks do not preempt on wake-up, so
	# each side finishes its burst of work first.
	GEN=(taskset -c 0 chrt -b 0)
	# The relay step keeps normal scheduling: a same-core direct transfer
	# under SCHED_BATCH runs unpreempted at twice its usual rate, which
	# would make the baseline a different experiment from the proxied one.
	TCPGEN=(taskset -c 0)
	PROXY=(taskset -c 1)
	THREADS=1
	PINNING="wrk/loadgen/tcpstream/tlsidle and the origin servers on CPU 0 (SCHED_BATCH, except the relay step: no wake-up preemption among them); the proxy under test alone on CPU 1 (HAProxy nbthread 1, pbxgate GOMAXPROCS=1)"
else
	GEN=()
	TCPGEN=()
	PROXY=()
	THREADS=$ncpu
	PINNING="none; proxies get $THREADS threads (HAProxy nbthread, pbxgate GOMAXPROCS)"
fi

WORK=$(mktemp -d /tmp/pbxgate-bench.XXXXXX)
mkdir -p "$WORK/bin" "$WORK/data" "$BENCH_DIR/results"
RAW="$WORK/raw.txt"
: >"$RAW"
put() { printf '%s\n' "$@" >>"$RAW"; }
# put_busy PREFIX "N=PCT ...": one PREFIXN_busy_pct=PCT result per CPU of a cpu_busy line.
put_busy() {
	local c
	for c in $2; do
		put "$1${c%%=*}_busy_pct=${c#*=}"
	done
}

# ---------------------------------------------------------------------- build
log "building into $WORK/bin"
(cd "$REPO" && go build -o "$WORK/bin/" ./bench/backend ./bench/loadgen ./bench/tcpstream ./bench/tlsidle ./bench/benchutil)
WITH_PBX=1
if [[ "$PBXGATE_BIN" == none ]]; then
	WITH_PBX=0
	log "PBXGATE_BIN=none: running the direct and HAProxy cases only"
elif [[ -n "$PBXGATE_BIN" ]]; then
	cp "$PBXGATE_BIN" "$WORK/bin/pbxgate"
else
	(cd "$REPO" && go build -o "$WORK/bin/pbxgate" ./cmd/pbxgate)
fi
B="$WORK/bin"

read -r -d '' -a ports < <("$B/benchutil" ports 8 && printf '\0')
ORIGIN_HTTP=${ports[0]} ORIGIN_TCP=${ports[1]}
HAP_HTTP=${ports[2]} HAP_HTTPS=${ports[3]} HAP_TCP=${ports[4]}
PBX_HTTP=${ports[5]} PBX_HTTPS=${ports[6]} PBX_TCP=${ports[7]}
"$B/benchutil" cert "$WORK"

render "$BENCH_DIR/haproxy.cfg.in" "$WORK/haproxy.cfg" THREADS="$THREADS" MAXCONN="$MAXCONN" \
	HAP_HTTP="$HAP_HTTP" HAP_HTTPS="$HAP_HTTPS" HAP_TCP="$HAP_TCP" \
	COMBINED_PEM="$WORK/combined.pem" ORIGIN_HTTP="$ORIGIN_HTTP" ORIGIN_TCP="$ORIGIN_TCP"
for access in false true; do
	level=warn
	[[ "$access" == false ]] || level=info
	render "$BENCH_DIR/pbxgate.yaml.in" "$WORK/pbxgate-access-$access.yaml" DATA_DIR="$WORK/data" ACCESS="$access" LEVEL="$level" \
		CERT="$WORK/cert.pem" KEY="$WORK/key.pem" PBX_HTTP="$PBX_HTTP" PBX_HTTPS="$PBX_HTTPS" PBX_TCP="$PBX_TCP" \
		ORIGIN_HTTP="$ORIGIN_HTTP" ORIGIN_TCP="$ORIGIN_TCP"
done
haproxy -c -q -f "$WORK/haproxy.cfg" || die "haproxy rejected $WORK/haproxy.cfg"

pbx_version=n/a
wait_idle "$WAIT_IDLE"
commit=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)
if ((WITH_PBX)); then
	pbx_version=$("$B/pbxgate" version 2>/dev/null | head -1 | sed "s/^pbxgate //" || echo unknown)
fi
put "meta.date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	"meta.cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
	"meta.cores=$ncpu" "meta.kernel=Linux $(uname -r)" \
	"meta.os=$(. /etc/os-release && echo "$PRETTY_NAME")" \
	"meta.go=$(go version | awk '{print $3}')" \
	"meta.haproxy=HAProxy $(haproxy -v | awk 'NR==1{print $3}')" \
	"meta.wrk=wrk $(wrk --version 2>&1 | awk 'NR==1{print $2}')" \
	"meta.origin=origin bench/backend -mode $ORIGIN_MODE" \
	"meta.pbxgate_version=$pbx_version" "meta.commit=$commit" \
	"meta.pinning=$PINNING" "meta.loadavg=$(cut -d' ' -f1-3 /proc/loadavg)" "meta.idle_before_pct=$(cpu_idle 2)" \
	"meta.nofile=$(ulimit -n)" "meta.duration=$DUR" "meta.lat_duration=$LAT_DUR" "meta.wrk_conns=$CONNS"

# ------------------------------------------------------------------- servers
start origin-http "${GEN[@]}" env GOMAXPROCS=1 "$B/backend" -addr "127.0.0.1:$ORIGIN_HTTP" -mode "$ORIGIN_MODE"
wait_port "$ORIGIN_HTTP" "$LAST_PID" origin-http
start origin-tcp "${TCPGEN[@]}" env GOMAXPROCS=1 "$B/tcpstream" serve -addr "127.0.0.1:$ORIGIN_TCP"
wait_port "$ORIGIN_TCP" "$LAST_PID" origin-tcp

HAP_PID="" PBX_PID=""
start_haproxy() {
	start haproxy "${PROXY[@]}" haproxy -db -f "$WORK/haproxy.cfg"
	HAP_PID=$LAST_PID
	wait_port "$HAP_HTTP" "$HAP_PID" haproxy
}
start_pbxgate() { # start_pbxgate ACCESS(true|false) [ENV=VALUE...]
	local access=$1
	shift
	start "pbxgate-access-$access" "${PROXY[@]}" env GOMAXPROCS="$THREADS" "$@" "$B/pbxgate" serve -c "$WORK/pbxgate-access-$access.yaml"
	PBX_PID=$LAST_PID
	wait_port "$PBX_HTTP" "$PBX_PID" "pbxgate-access-$access"
	wait_port "$PBX_HTTPS" "$PBX_PID" "pbxgate-access-$access"
}

# check_ok URL [CURL-ARGS...]: the proxy path answers 200 "ok".
check_ok() {
	local body
	body=$(curl -fsSk --max-time 5 "$@") || die "GET $1 failed"
	[[ "$body" == ok ]] || die "GET $1 answered '$body', want 'ok'"
}

start_haproxy
check_ok "http://127.0.0.1:$HAP_HTTP/"
check_ok "https://localhost:$HAP_HTTPS/" --resolve "localhost:$HAP_HTTPS:127.0.0.1"
if ((WITH_PBX)); then
	start_pbxgate false
	check_ok "http://127.0.0.1:$PBX_HTTP/"
	check_ok "https://localhost:$PBX_HTTPS/" --resolve "localhost:$PBX_HTTPS:127.0.0.1"
fi

# result_line FILE TAG PREFIX: turn the "TAG k=v k=v" line of FILE into
# PREFIX.k=v results.
result_line() {
	local file=$1 tag=$2 prefix=$3 line kv
	line=$(grep -m1 "^$tag " "$file") || { cat "$file" >&2; die "no $tag line in $file"; }
	for kv in ${line#"$tag "}; do
		put "$prefix.$kv"
	done
}

# --------------------------------------------------------- 1. HTTP with wrk
# wrk_case KEY URL: a short warm-up, the throughput run, the -c1 latency run.
wrk_case() {
	local key=$1 url=$2 out="$WORK/wrk-$1.txt"
	log "http: $key ($url)"
	timeout 60 "${GEN[@]}" wrk -t1 -c"$CONNS" -d2s "$url" >/dev/null
	timeout 600 "${GEN[@]}" wrk -t1 -c"$CONNS" -d"$DUR" --latency -s "$BENCH_DIR/wrk-report.lua" "$url" >"$out"
	result_line "$out" WRKRESULT "http.$key"
	timeout 600 "${GEN[@]}" wrk -t1 -c1 -d"$LAT_DUR" -s "$BENCH_DIR/wrk-report.lua" "$url" >"$out.c1"
	result_line "$out.c1" WRKRESULT "http_c1.$key"
}

if has_step http; then
	put "meta.idle_before_http_pct=$(cpu_idle 1)"
	wrk_case direct "http://127.0.0.1:$ORIGIN_HTTP/"
	wrk_case haproxy "http://127.0.0.1:$HAP_HTTP/"
	wrk_case haproxy_tls "https://localhost:$HAP_HTTPS/"
	if ((WITH_PBX)); then
		wrk_case pbxgate "http://127.0.0.1:$PBX_HTTP/"
		wrk_case pbxgate_tls "https://localhost:$PBX_HTTPS/"
		stop "$PBX_PID"
		start_pbxgate true
		check_ok "http://127.0.0.1:$PBX_HTTP/"
		wrk_case pbxgate_access "http://127.0.0.1:$PBX_HTTP/"
		put "meta.access_log_lines=$(grep -c 'msg="http request"' "$WORK/pbxgate-access-true.log" || true)"
		stop "$PBX_PID"
		start_pbxgate false
	fi
fi

# ---------------------------------------------- 2. constant-rate added latency
if has_step rate; then
	put "meta.idle_before_rate_pct=$(cpu_idle 1)"
	peak_key=pbxgate
	((WITH_PBX)) || peak_key=haproxy
	peak=$(sed -n "s/^http\.$peak_key\.rps=//p" "$RAW" | tail -1)
	if [[ -z "$peak" ]]; then
		peak=${BENCH_RATE_PEAK:-}
		[[ -n "$peak" ]] || die "step rate needs step http (or BENCH_RATE_PEAK=req/s)"
		basis="$RATE_FRACTION x BENCH_RATE_PEAK $peak"
	else
		basis="$RATE_FRACTION x $peak_key peak $(printf '%.0f' "$peak") req/s"
	fi
	rate=$(awk -v p="$peak" -v f="$RATE_FRACTION" 'BEGIN{printf "%d", p*f}')
	put "rate.target_rps=$rate" "rate.basis=$basis" "rate.conns=$CONNS" "rate.duration=$RATE_DUR" "rate.warmup=$RATE_WARMUP"
	rate_case() { # rate_case PREFIX RATE KEY URL
		local before busy
		log "$1: $3 $2 req/s ($4)"
		before=$(cpu_times)
		timeout 600 "${GEN[@]}" "$B/loadgen" -url "$4" -rate "$2" -conns "$CONNS" \
			-duration "$RATE_DUR" -warmup "$RATE_WARMUP" >"$WORK/$1-$3.txt"
		busy=$(cpu_busy "$before" "$(cpu_times)")
		result_line "$WORK/$1-$3.txt" RATERESULT "$1.$3"
		# How busy each CPU was (warm-up included): with pinning, CPU 0 is
		# the generator's and the origin's, CPU 1 the proxy's.
		put_busy "$1.$3.cpu" "$busy"
	}
	rate_round() { # rate_round PREFIX RATE
		rate_case "$1" "$2" direct "http://127.0.0.1:$ORIGIN_HTTP/"
		rate_case "$1" "$2" haproxy "http://127.0.0.1:$HAP_HTTP/"
		if ((WITH_PBX)); then
			rate_case "$1" "$2" pbxgate "http://127.0.0.1:$PBX_HTTP/"
		fi
	}
	rate_round rate "$rate"
	# On a 2-core machine the load generator and the origin share one core;
	# at half of a proxy's peak that core can be saturated, and then the
	# tail measures the harness. A second round at a lower fraction shows the
	# proxy's added latency where the harness still keeps up.
	if [[ -n "$RATE_FRACTION2" ]]; then
		rate2=$(awk -v p="$peak" -v f="$RATE_FRACTION2" 'BEGIN{printf "%d", p*f}')
		put "rate2.target_rps=$rate2" "rate2.basis=$RATE_FRACTION2 x ${basis#* x }"
		rate_round rate2 "$rate2"
	fi
fi

# ------------------------------------------------------------ 3. TCP relay
if has_step tcp; then
	if [[ -n "$TCP_CC" && "$TCP_CC" != "$(cat "$CC_SYSCTL")" ]]; then
		grep -qw -- "$TCP_CC" /proc/sys/net/ipv4/tcp_available_congestion_control ||
			modprobe "tcp_$TCP_CC" 2>/dev/null || die "BENCH_TCP_CC=$TCP_CC: not an available congestion control ($(cat /proc/sys/net/ipv4/tcp_available_congestion_control))"
		CC_RESTORE=$(cat "$CC_SYSCTL")
		echo "$TCP_CC" >"$CC_SYSCTL" || die "BENCH_TCP_CC=$TCP_CC: cannot set $CC_SYSCTL (needs root)"
		log "tcp: congestion control $TCP_CC for this step (machine default $CC_RESTORE)"
	fi
	put "meta.idle_before_tcp_pct=$(cpu_idle 1)"
	put "tcp.bytes=$TCP_BYTES" "tcp.streams=1" "tcp.repeat=$TCP_REPEAT" "tcp.cc=$(cat "$CC_SYSCTL")"
	tcp_case() { # tcp_case KEY PORT [PIN...]: best of TCP_REPEAT transfers each way
		local key=$1 port=$2 dir i best mbps before busy best_busy
		shift 2
		local pin=("$@")
		((${#pin[@]})) || pin=("${TCPGEN[@]}")
		for dir in down up; do
			best=0 best_busy=
			for ((i = 1; i <= TCP_REPEAT; i++)); do
				log "tcp: $key $dir $TCP_BYTES bytes ($i/$TCP_REPEAT)"
				before=$(cpu_times)
				timeout 300 "${pin[@]}" "$B/tcpstream" client -addr "127.0.0.1:$port" -bytes "$TCP_BYTES" -dir "$dir" \
					>"$WORK/tcp-$key-$dir.txt"
				busy=$(cpu_busy "$before" "$(cpu_times)")
				mbps=$(sed -n 's/^TCPRESULT mbps=\([0-9.]*\) .*/\1/p' "$WORK/tcp-$key-$dir.txt")
				[[ -n "$mbps" ]] || { cat "$WORK/tcp-$key-$dir.txt" >&2; die "no TCPRESULT from tcpstream"; }
				if awk -v a="$best" -v b="$mbps" 'BEGIN{exit !(b > a)}'; then
					best=$mbps best_busy=$busy
				fi
			done
			put "tcp.$key.${dir}_mbps=$best"
			# How busy each CPU was during the best transfer: with pinning,
			# CPU 0 runs both ends, CPU 1 the proxy alone.
			put_busy "tcp.$key.${dir}_cpu" "$best_busy"
		done
	}
	tcp_case direct "$ORIGIN_TCP"
	# The same transfer with the client on the proxy's core: the two ends no
	# longer share one CPU's cache, as they do not through a proxy either.
	if ((${#PROXY[@]})); then
		tcp_case direct_xcore "$ORIGIN_TCP" "${PROXY[@]}"
	fi
	tcp_case haproxy "$HAP_TCP"
	if ((WITH_PBX)); then
		tcp_case pbxgate "$PBX_TCP"
	fi
	restore_cc
fi

# ------------------------------------------------- 4. idle TLS connections
vm() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; } # vm PID VmRSS -> kB
if has_step idle; then
	put "meta.idle_before_idle_pct=$(cpu_idle 1)"
	put "rss.conns=$IDLE_CONNS"
	# idle_case KEY PID PORT: fresh proxy PID, hold IDLE_CONNS connections, read its memory.
	idle_case() {
		local key=$1 pid=$2 port=$3 ready="$WORK/idle-$1.ready" i
		sleep 1
		put "rss.$key.rss_before_kb=$(vm "$pid" VmRSS)"
		log "idle: $key, opening $IDLE_CONNS TLS connections"
		start "tlsidle-$key" "${GEN[@]}" "$B/tlsidle" -addr "127.0.0.1:$port" -n "$IDLE_CONNS" -hold 5m -ready "$ready"
		local cpid=$LAST_PID
		for ((i = 0; i < 1800; i++)); do
			[[ -e "$ready" ]] && break
			kill -0 "$cpid" 2>/dev/null || { cat "$WORK/tlsidle-$key.log" >&2; die "tlsidle exited early"; }
			sleep 0.1
		done
		[[ -e "$ready" ]] || die "tlsidle did not finish opening connections within 180 s"
		sleep 2
		put "rss.$key.rss_kb=$(vm "$pid" VmRSS)" "rss.$key.hwm_kb=$(vm "$pid" VmHWM)" \
			"rss.$key.fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 | wc -l)"
		result_line "$WORK/tlsidle-$key.log" IDLERESULT "rss.$key"
		stop "$cpid"
	}
	stop "$HAP_PID"
	if ((WITH_PBX)); then
		stop "$PBX_PID"
		start_pbxgate false
		idle_case pbxgate "$PBX_PID" "$PBX_HTTPS"
		stop "$PBX_PID"
		if [[ -n "$IDLE_MEMLIMIT" ]]; then
			put "rss.memlimit=$IDLE_MEMLIMIT"
			start_pbxgate false GOMEMLIMIT="$IDLE_MEMLIMIT"
			idle_case pbxgate_memlimit "$PBX_PID" "$PBX_HTTPS"
			stop "$PBX_PID"
		fi
	fi
	start_haproxy
	idle_case haproxy "$HAP_PID" "$HAP_HTTPS"
fi

# ------------------------------------------ 5. Go micro-benchmarks (routing)
if [[ "$GOBENCH" == 1 ]] && ((WITH_PBX)); then
	pkgs=()
	for p in ./internal/sniff ./internal/listen ./internal/httpproxy ./internal/certs ./internal/ldap; do
		[[ -d "$REPO/$p" ]] && pkgs+=("$p")
	done
	if ((${#pkgs[@]})); then
		log "go micro-benchmarks: ${pkgs[*]}"
		(cd "$REPO" && timeout 300 go test -run '^$' -bench "${BENCH_GO_PATTERN:-Classify|ServerName|Prepare|Decide|Lookup|RouteDecision}" -benchmem -benchtime=200ms "${pkgs[@]}") \
			>"$WORK/gobench.txt" 2>&1 || { cat "$WORK/gobench.txt" >&2; die "go micro-benchmarks failed"; }
		names=()
		while read -r name ns b allocs; do
			name=${name#Benchmark}
			name=${name%-*}
			name=${name//./_}
			names+=("$name")
			put "gobench.$name.ns_op=$ns" "gobench.$name.b_op=$b" "gobench.$name.allocs_op=$allocs"
		done < <(awk '/^Benchmark.*allocs\/op/ {
			for (i = 2; i <= NF; i++) {
				if ($i == "ns/op") ns = $(i-1)
				if ($i == "B/op") b = $(i-1)
				if ($i == "allocs/op") a = $(i-1)
			}
			print $1, ns, b, a }' "$WORK/gobench.txt")
		put "gobench.names=${names[*]}"
	fi
fi

# ------------------------------------------------------------------ report
put "meta.loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
"$B/benchutil" report "$RAW" "$BENCH_DIR/results/latest.txt" "$BENCH_DIR/results/latest.json"
cp "$RAW" "$BENCH_DIR/results/latest.raw"
log "wrote bench/results/latest.txt and bench/results/latest.json"
