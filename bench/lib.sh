# bench/lib.sh: process and template helpers the benchmark scripts share.
# Sourced by the bench/*.sh scripts after they define log, die, put, KEEP
# and the arrays below; not meant to be run.
#
# PIDS are the processes started with start (stopped by cleanup on exit),
# WORK the temporary directory (removed by cleanup unless KEEP=1), LAST_PID
# the process start started last.

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		stop_wait "$pid"
	done
	if [[ -n "$WORK" && -d "$WORK" ]]; then
		if [[ "$KEEP" == 1 ]]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
}

# stop_wait PID: wait up to 5 s for PID to exit after SIGTERM, then SIGKILL.
stop_wait() {
	local pid=$1 i
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# start NAME CMD...: run CMD in the background, output to $WORK/NAME.log;
# sets LAST_PID.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop PID: stop one process started with start.
stop() {
	local pid=$1 p keep=()
	kill -TERM "$pid" 2>/dev/null || true
	stop_wait "$pid"
	for p in "${PIDS[@]}"; do
		[[ "$p" == "$pid" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

render() { # render TEMPLATE OUT KEY=VALUE...
	local in=$1 out=$2 kv args=()
	shift 2
	for kv in "$@"; do
		args+=(-e "s|@${kv%%=*}@|${kv#*=}|g")
	done
	sed "${args[@]}" "$in" >"$out"
	! grep -v '^[[:space:]]*#' "$out" | grep '@[A-Z_]*@' || die "unfilled placeholder in $out"
}

# ---------------------------------------------------------------------- meta
# cpu_idle SECONDS: percent of all CPU time idle over the next SECONDS, to
# tell whether something else was competing with the benchmark.
cpu_idle() {
	local a b
	a=($(head -1 /proc/stat))
	sleep "$1"
	b=($(head -1 /proc/stat))
	awk -v a="${a[*]}" -v b="${b[*]}" 'BEGIN{
		n = split(a, x, " "); split(b, y, " "); t = 0
		for (i = 2; i <= n; i++) t += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6])
		printf "%.0f", (t > 0 ? 100 * idle / t : 0) }'
}

# cpu_times: the "cpuN ..." lines of /proc/stat, one per CPU, for cpu_busy.
cpu_times() { grep '^cpu[0-9]' /proc/stat; }

# cpu_busy BEFORE AFTER: "N=PCT" for each CPU, the percentage of the time
# between two cpu_times snapshots it was not idle (softirq included).
cpu_busy() {
	awk -v a="$1" -v b="$2" 'BEGIN{
		n = split(a, la, "\n"); split(b, lb, "\n")
		for (k = 1; k <= n; k++) {
			m = split(la[k], x, " "); split(lb[k], y, " "); t = 0
			for (i = 2; i <= m; i++) t += y[i] - x[i]
			idle = (y[5] - x[5]) + (y[6] - x[6])
			printf "%s%s=%.0f", (k > 1 ? " " : ""), substr(x[1], 4), (t > 0 ? 100 * (t - idle) / t : 0)
		} }'
}

# wait_idle SECONDS: wait up to SECONDS (in steps of 5) for the CPUs to be
# at least 90 % idle before measuring (BENCH_WAIT_IDLE on shared machines).
wait_idle() {
	local waited=0 idle
	while ((waited < $1)); do
		idle=$(cpu_idle 5)
		((idle >= 90)) && return 0
		log "CPUs only $idle % idle; waiting (BENCH_WAIT_IDLE=$1)"
		waited=$((waited + 5))
	done
}

# need_tools TOOL:PACKAGE...: install (apt-get, as root) the Debian
# packages of the tools missing from PATH or from /usr/sbin and /sbin.
need_tools() {
	local pair need=()
	for pair in "$@"; do
		command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 ||
			need+=("${pair#*:}")
	done
	((${#need[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "missing ${need[*]}: run as root or apt-get install -y ${need[*]}"
	log "installing ${need[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# report_and_exit TOOL NAME: turns $RAW into bench/results/NAME-latest.txt
# and .json with "TOOL report" and exits with its verdict (0 every check
# passed, 1 some failed; anything else from TOOL is an error).
report_and_exit() {
	local tool=$1 name=$2 rc=0
	put "meta.loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
	[[ "$KEEP" == 1 ]] && log "raw results: $RAW"
	"$tool" report "$RAW" "$BENCH_DIR/results/$name-latest.txt" "$BENCH_DIR/results/$name-latest.json" || rc=$?
	((rc == 0 || rc == 1)) || die "$(basename "$tool") report failed (exit $rc)"
	log "wrote bench/results/$name-latest.txt and bench/results/$name-latest.json"
	exit "$rc"
}
