// Command fraudflood measures what a brute-force flood does to the
// legitimate users of pbxgate. The target it checks: under a flood of
// wrong-password requests from 1,000 sources, legitimate users keep at least
// 99.9 % success and their p99 latency stays within 2x of the quiet
// baseline.
//
// It starts a login backend (HTTP basic authentication) on loopback and the
// pbxgate binary it is given, with a generated configuration: one plain HTTP
// listener routing Host portal.bench to the backend, the default fraud
// policy (10 suspicious events a minute, 30 minute bans), no admin listener,
// level warn and no access log. Then:
//
//   - legitimate users, each a keep-alive HTTP/1.1 connection from its own
//     source address 127.0.1.x, log in with the right password at a fixed
//     total rate, open loop: every request has a due time, a request sent
//     late is counted late and its latency runs from its due time (no
//     coordinated omission);
//   - phase "quiet": the users alone, the baseline;
//   - phase "flood": the same users while attackers from 127.2.x.y each send
//     wrong passwords as fast as they can on a new connection per attempt
//     (at most -attempts each, one at a time, each connection attempt given
//     up after -connect-timeout).
//
// With -kernel-blacklist pbxgate's configuration enables
// firewall.kernel_blacklist: pbxgate mirrors its bans into the nftables
// table inet pbxgate_bl of the network namespace it runs in, whose
// prerouting chain (priority raw) drops a banned source's packets before
// they reach pbxgate; a banned attacker's connection attempts then time out
// instead of being refused. That needs CAP_NET_ADMIN and changes the
// namespace's nftables: run it as root in a network namespace of its own
// (bench/fraud.sh does, with BENCH_FRAUD_KERNEL). fraudflood then also
// reads the chain's drop counters over netlink, second by second, and
// checks that the set holds the banned attackers.
//
// The backend and the attackers run in child processes (this program
// re-executed), so that the operating system, not one Go scheduler, shares
// the CPU between them and the users; the attackers may be niced. A control
// user logs in straight at the backend throughout: its latency is the
// harness's and the backend's share, which pbxgate cannot be blamed for.
//
// It prints a table (and writes JSON with -json): success and latency of
// both phases and their p99 ratio; the flood split at the last answer an
// attacker got before its ban (the burst the fraud policy lets through,
// then the banned flood); the flood second by second with pbxgate's CPU
// time and each CPU's load; what the attackers got (answers before their
// ban, refused connections, connection attempts that timed out); the
// packets the kernel dropped (with -kernel-blacklist); the bans pbxgate
// logged ("source banned" lines in its log) and its error lines; PASS or
// FAIL against the targets.
// Exit status: 0 pass, 1 a target or check missed, 2 the run failed.
//
// "fraudflood compare FILE.json..." prints the runs' JSON results side by
// side (one line per run: mode, p99 quiet and flooded, their ratio,
// success, what the attackers got, kernel drops, verdict); its exit status
// is 0 when every run passed, 1 when not, 2 on error.
//
// Linux only (many loopback source addresses, timerfd, /proc). It does not
// build pbxgate (bench/fraud.sh does) and does not pin CPUs itself: run it
// under taskset and give -pbxgate-cpus. Every phase is bounded in time and
// every attacker in attempts. It is a benchmark tool, not part of pbxgate.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	pbxgate      string
	pbxCPUs      string
	pbxProcs     int
	users        int
	rate         int
	warmup       time.Duration
	quiet        time.Duration
	flood        time.Duration
	attackers    int
	attempts     int
	timeout      time.Duration
	connTimeout  time.Duration
	late         time.Duration
	attackerNice int
	threshold    int
	suspectRate  int
	unproven     int
	blacklistFor string
	refusedHold  string
	host         string
	minSuccess   float64
	maxRatio     float64
	jsonOut      string
	keep         bool
	meta         metaFlag
	settle       time.Duration
	control      bool
	kernelBL     bool
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("fraudflood: ")
	if len(os.Args) > 1 {
		if os.Args[1] == "compare" {
			os.Exit(compareMain(os.Stdout, os.Args[2:]))
		}
		sub := map[string]func([]string) error{"attack": attackMain, "backend": backendMain}[os.Args[1]]
		if sub != nil {
			if err := sub(os.Args[2:]); err != nil {
				log.Print(err)
				os.Exit(2)
			}
			return
		}
	}
	var o options
	flag.StringVar(&o.pbxgate, "pbxgate", "", "pbxgate binary to run (required)")
	flag.StringVar(&o.pbxCPUs, "pbxgate-cpus", "", "run pbxgate under taskset -c `LIST` (empty: no pinning)")
	flag.IntVar(&o.pbxProcs, "pbxgate-gomaxprocs", 0, "GOMAXPROCS for pbxgate (0: not set)")
	flag.IntVar(&o.users, "users", 20, "legitimate users, each its own source address (1..254)")
	flag.IntVar(&o.rate, "rate", 500, "total legitimate requests per second")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "legitimate load before the quiet phase, not measured")
	flag.DurationVar(&o.quiet, "quiet", 10*time.Second, "quiet phase: legitimate users only")
	flag.DurationVar(&o.flood, "flood", 60*time.Second, "flood phase: legitimate users and attackers (one ban window)")
	flag.IntVar(&o.attackers, "attackers", 1000, "attacker source addresses")
	flag.IntVar(&o.attempts, "attempts", 2000, "attempts per attacker at most")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "per request (legitimate and attacker)")
	flag.DurationVar(&o.connTimeout, "connect-timeout", time.Second, "attackers: give up a connection attempt (a handshake) after this long, at most -timeout")
	flag.BoolVar(&o.kernelBL, "kernel-blacklist", false, "enable pbxgate's firewall.kernel_blacklist and count the kernel's drops (root, in a network namespace of its own)")
	flag.DurationVar(&o.late, "late", time.Millisecond, "a legitimate request sent more than this after its due time counts as late")
	flag.IntVar(&o.attackerNice, "attacker-nice", 10, "nice value of the attacker process (0: as the rest)")
	flag.IntVar(&o.threshold, "threshold", 10, "pbxgate fraud.suspicious_per_minute")
	flag.StringVar(&o.blacklistFor, "blacklist-for", "30m", "pbxgate fraud.blacklist_for")
	flag.IntVar(&o.suspectRate, "suspect-rate", 200, "pbxgate fraud.suspect_rate")
	flag.IntVar(&o.unproven, "unproven-concurrency", 16, "pbxgate fraud.unproven_concurrency")
	flag.StringVar(&o.refusedHold, "refused-hold", "", "pbxgate fraud.refused_hold (empty: pbxgate's default)")
	flag.StringVar(&o.host, "host", "portal.bench", "Host routed to the login backend")
	flag.Float64Var(&o.minSuccess, "min-success", 99.9, "target: flood-phase success of legitimate users, percent, at least")
	flag.Float64Var(&o.maxRatio, "max-ratio", 2, "target: flood p99 / quiet p99, at most")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to `FILE`")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (config, pbxgate log)")
	flag.DurationVar(&o.settle, "settle", 60*time.Second, "after the flood, wait at most this long for pbxgate to log the remaining bans")
	flag.BoolVar(&o.control, "control", true, "also run one user straight to the backend, to show the harness's share of the latency")
	flag.Var(&o.meta, "meta", "`KEY=VALUE` recorded in the results' meta (repeatable; e.g. pinning=..., commit=...)")
	flag.Parse()
	if err := o.validate(); err != nil {
		log.Print(err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		log.Print(err)
		os.Exit(2)
	}
	printReport(os.Stdout, rep)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			log.Print(err)
			os.Exit(2)
		}
	}
	if !rep.Verdict.Pass {
		os.Exit(1)
	}
}

func (o *options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.pbxgate != "", "-pbxgate is required")
	check(o.users >= 1 && o.users <= maxUsers, "-users %d: want 1..%d", o.users, maxUsers)
	check(o.rate >= 1 && o.rate <= 100_000, "-rate %d: want 1..100000", o.rate)
	check(o.attackers >= 1 && o.attackers <= maxAttackers, "-attackers %d: want 1..%d", o.attackers, maxAttackers)
	check(o.attempts >= 1 && o.attempts <= 1_000_000, "-attempts %d: want 1..1000000", o.attempts)
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"warmup", o.warmup, 0}, {"quiet", o.quiet, time.Second}, {"flood", o.flood, time.Second}, {"timeout", o.timeout, 10 * time.Millisecond}, {"connect-timeout", o.connTimeout, time.Millisecond}, {"late", o.late, 0}, {"settle", o.settle, 0}} {
		check(d.v >= d.min && d.v <= time.Hour, "-%s %v: want %v..1h", d.name, d.v, d.min)
	}
	check(o.connTimeout <= o.timeout, "-connect-timeout %v: want at most -timeout %v", o.connTimeout, o.timeout)
	check(o.threshold >= 1, "-threshold %d: want at least 1", o.threshold)
	check(o.suspectRate >= 1, "-suspect-rate %d: want at least 1", o.suspectRate)
	check(o.unproven >= 1, "-unproven-concurrency %d: want at least 1", o.unproven)
	check(o.attackerNice >= 0 && o.attackerNice <= 19, "-attacker-nice %d: want 0..19", o.attackerNice)
	check(o.minSuccess > 0 && o.minSuccess <= 100, "-min-success %v: want (0, 100]", o.minSuccess)
	check(o.maxRatio >= 1, "-max-ratio %v: want at least 1", o.maxRatio)
	check(flag.NArg() == 0, "unexpected arguments %q", flag.Args())
	return errors.Join(errs...)
}

// report is everything one run measured.
type report struct {
	Meta  map[string]string `json:"meta"`
	Setup map[string]any    `json:"setup"`
	Quiet *phaseStats       `json:"quiet"`
	Flood *phaseStats       `json:"flood"`
	// QuietDirect and FloodDirect are the control user, straight to the
	// backend (nil with -control=false).
	QuietDirect *phaseStats `json:"quiet_direct,omitempty"`
	FloodDirect *phaseStats `json:"flood_direct,omitempty"`
	// FloodBurst and FloodBanned split the flood's users at the last answer
	// to an attacker that was then banned: before, the attackers' answered
	// attempts; after, only refused connections (and bans still being
	// stored). Nil when no attacker was refused.
	FloodBurst  *phaseStats `json:"flood_burst,omitempty"`
	FloodBanned *phaseStats `json:"flood_after_burst,omitempty"`
	// FloodFirst and FloodRest split the flood's users at its first
	// second, when a thousand sources nobody has seen yet connect at once
	// and are served as new users would be. Nil for a flood of a second.
	FloodFirst *phaseStats  `json:"flood_first_second,omitempty"`
	FloodRest  *phaseStats  `json:"flood_after_first_second,omitempty"`
	Ratio      float64      `json:"p99_ratio"`
	Attack     attackResult `json:"attack"`
	Kernel     *kernelStats `json:"kernel_blacklist,omitempty"` // with -kernel-blacklist
	Bans       banStats     `json:"bans"`
	Gateway    gatewayStats `json:"pbxgate"`
	Verdict    verdict      `json:"verdict"`
}

type gatewayStats struct {
	PeakRSSKiB  int            `json:"peak_rss_kib"`
	ErrorLines  map[string]int `json:"error_log_lines"` // by message
	ExitProblem string         `json:"exit_problem,omitempty"`
}

// banStats counts the "source banned" log lines of the flood.
type banStats struct {
	Logged        int     `json:"logged"`
	Attackers     int     `json:"attackers_banned"` // distinct attacker sources
	Legit         int     `json:"legit_banned"`     // legitimate users banned: a defect
	Other         int     `json:"other_banned"`
	LastAfterMs   float64 `json:"last_ban_after_ms"`   // from the flood's start
	MedianAfterMs float64 `json:"median_ban_after_ms"` // from the flood's start
}

func countBans(lines []banLine, extra int, floodStart time.Time, attackers int) banStats {
	st := banStats{Logged: len(lines) + extra}
	seen := map[string]bool{}
	var after []time.Duration
	for _, b := range lines {
		a, err := parseAddr(b.Src)
		switch {
		case err != nil:
			st.Other++
			continue
		case isAttacker(a, attackers):
			if !seen[b.Src] {
				seen[b.Src] = true
				st.Attackers++
			}
		case isLegit(a):
			st.Legit++
		default:
			st.Other++
		}
		if !b.Time.IsZero() && !floodStart.IsZero() {
			after = append(after, b.Time.Sub(floodStart))
		}
	}
	sortDurations(after)
	st.LastAfterMs = ms(percentile(after, 10000))
	st.MedianAfterMs = ms(percentile(after, 5000))
	return st
}

// kernelStats is what the kernel blacklist did (-kernel-blacklist).
type kernelStats struct {
	// DropsQuiet, DropsFlood and DropsAfter are the packets the chain's
	// rules dropped during the quiet phase, the flood phase, and from the
	// flood's end until pbxgate stopped.
	DropsQuiet uint64 `json:"drops_quiet"`
	DropsFlood uint64 `json:"drops_flood"`
	DropsAfter uint64 `json:"drops_after"`
	// Covered is how many of the banned attackers the set bl4 held at the
	// end; Banned how many attackers pbxgate had banned by then.
	Covered int `json:"attackers_in_set"`
	Banned  int `json:"attackers_banned"`
	// Error is the first failure to read the kernel's state.
	Error string `json:"error,omitempty"`
}

// verdict compares a run with the targets.
type verdict struct {
	MinSuccessPct float64  `json:"target_min_success_pct"`
	MaxRatio      float64  `json:"target_max_p99_ratio"`
	SuccessOK     bool     `json:"success_ok"`
	RatioOK       bool     `json:"ratio_ok"`
	Problems      []string `json:"problems,omitempty"` // checks that make the run fail besides the targets
	Pass          bool     `json:"pass"`
}

// judge applies the targets, and the checks without which the numbers mean
// nothing: the attack must have reached the backend and been banned, no user
// banned, and banned attackers refused.
func judge(r *report, minSuccess, maxRatio float64) verdict {
	v := verdict{MinSuccessPct: minSuccess, MaxRatio: maxRatio}
	v.SuccessOK = r.Flood.SuccessPct >= minSuccess
	v.RatioOK = r.Quiet.P99 > 0 && r.Ratio <= maxRatio
	if r.Attack.Answered401 == 0 {
		v.Problems = append(v.Problems, "no attacker request was answered 401: the attack never reached the login")
	}
	if r.Bans.Attackers == 0 {
		v.Problems = append(v.Problems, "no attacker was banned")
	}
	if r.Bans.Legit > 0 {
		v.Problems = append(v.Problems, fmt.Sprintf("%d legitimate users banned", r.Bans.Legit))
	}
	if n := r.Attack.AttemptsAfterBan; n > 0 && float64(r.Attack.AnsweredAfterBan) > 0.01*float64(n) {
		v.Problems = append(v.Problems, fmt.Sprintf("%d of %d attempts after an attacker's first refusal were still answered (over 1 %%)",
			r.Attack.AnsweredAfterBan, n))
	}
	if k := r.Kernel; k != nil {
		switch {
		case k.Error != "":
			v.Problems = append(v.Problems, "kernel blacklist: "+k.Error)
		case k.DropsFlood == 0:
			v.Problems = append(v.Problems, "the kernel dropped no packet during the flood: the bans never reached it")
		case k.Covered < k.Banned:
			v.Problems = append(v.Problems, fmt.Sprintf("the kernel set holds %d of the %d banned attackers", k.Covered, k.Banned))
		}
	}
	if r.Gateway.ExitProblem != "" {
		v.Problems = append(v.Problems, "pbxgate: "+r.Gateway.ExitProblem)
	}
	v.Pass = v.SuccessOK && v.RatioOK && len(v.Problems) == 0
	return v
}

// run does the whole benchmark.
func run(ctx context.Context, o options) (rep *report, err error) {
	if err := raiseNoFile(o); err != nil {
		return nil, err
	}
	if o.kernelBL {
		if err := ownNetNS(); err != nil {
			return nil, err
		}
	}
	for _, a := range []string{legitAddr(0).String(), legitAddr(o.users - 1).String(), attackerAddr(o.attackers - 1).String()} {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, "0"))
		if err != nil {
			return nil, fmt.Errorf("source address %s unusable (Linux routes 127.0.0.0/8 to lo): %w", a, err)
		}
		ln.Close()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "pbxgate-fraudflood-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if o.keep {
			log.Printf("kept %s", work)
		} else {
			os.RemoveAll(work)
		}
	}()

	// The login backend, in a process of its own: its goroutines would
	// otherwise queue the users' goroutines behind the attackers' requests
	// it serves before the bans.
	bk, err := startChild(self, 0, "backend", "-users", strconv.Itoa(o.users))
	if err != nil {
		return nil, err
	}
	defer bk.abort()
	backendAddr, ok := strings.CutPrefix(bk.first, "listening ")
	if !ok {
		return nil, fmt.Errorf("backend said %q, want \"listening ADDR\"", bk.first)
	}

	// pbxgate.
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	conf, err := renderConfig(gatewayConfig{
		DataDir: filepath.Join(work, "data"), Listen: listen, Backend: backendAddr, Host: o.host,
		Threshold: o.threshold, BlacklistFor: o.blacklistFor, SuspectRate: o.suspectRate, Unproven: o.unproven, RefusedHold: o.refusedHold, MaxConns: max(10000, 2*(o.users+o.attackers)),
		KernelBlacklist: o.kernelBL,
	})
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(work, "pbxgate.yaml")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return nil, err
	}
	rep = &report{Meta: meta(o), Setup: setup(o, listen)}
	var wrap, env []string
	if o.pbxCPUs != "" {
		wrap = []string{"taskset", "-c", o.pbxCPUs}
	}
	if o.pbxProcs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(o.pbxProcs))
	}
	logf("starting pbxgate on %s (log %s)", listen, filepath.Join(work, "pbxgate.log"))
	gw, err := startGateway(o.pbxgate, confPath, filepath.Join(work, "pbxgate.log"), wrap, env)
	if err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = gw.stop(10 * time.Second)
		}
	}()
	if err := gw.waitListening(listen, 15*time.Second); err != nil {
		return nil, err
	}
	var kern *kernelBL
	if o.kernelBL {
		// pbxgate creates the table before it listens; a missing table
		// means it enforces nothing in the kernel, and the run is void.
		if kern, err = openKernelBL(); err != nil {
			return nil, err
		}
		defer kern.close()
		if _, err := kern.drops(); err != nil {
			return nil, fmt.Errorf("%w (pbxgate runs with firewall.kernel_blacklist enabled)\n%s", err, gw.logTail())
		}
		rep.Kernel = &kernelStats{}
	}
	// kernelDrops reads the kernel's drop counter; the first failure is
	// kept in the report (and fails the run's checks).
	kernelDrops := func() uint64 {
		if kern == nil {
			return 0
		}
		n, err := kern.drops()
		if err != nil && rep.Kernel.Error == "" {
			rep.Kernel.Error = err.Error()
		}
		return n
	}

	// The legitimate users, each checked once (which also opens its
	// connection).
	clients := make([]*legitClient, o.users)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range clients {
		c, err := newLegitClient(i, legitAddr(i), listen, o.host, o.timeout)
		if err != nil {
			return nil, err
		}
		clients[i] = c
		if ok, err := c.do(time.Now().Add(o.timeout)); !ok {
			return nil, fmt.Errorf("legitimate user %d cannot log in through pbxgate: %v\n%s", i, err, gw.logTail())
		}
	}

	// The control: one more user, at one user's rate, straight to the
	// backend. What it sees is the harness's and the backend's share of the
	// latency, not pbxgate's.
	var direct *legitClient
	if o.control {
		if direct, err = newLegitClient(0, netip.AddrFrom4([4]byte{127, 0, 0, 1}), backendAddr, o.host, o.timeout); err != nil {
			return nil, err
		}
		defer direct.close()
		if ok, err := direct.do(time.Now().Add(o.timeout)); !ok {
			return nil, fmt.Errorf("control user cannot log in at the backend: %v", err)
		}
	}

	// The attackers, set up and waiting.
	att, err := startChild(self, o.attackerNice, "attack", "-target", listen, "-host", o.host,
		"-attackers", strconv.Itoa(o.attackers), "-attempts", strconv.Itoa(o.attempts),
		"-duration", o.flood.String(), "-timeout", o.timeout.String(), "-connect-timeout", o.connTimeout.String())
	if err != nil {
		return nil, err
	}
	defer att.abort()
	if att.first != "ready" {
		return nil, fmt.Errorf("attackers said %q, want \"ready\"", att.first)
	}

	if o.warmup > 0 {
		logf("warm-up %v", o.warmup)
		if _, _, _, err := runPhase(ctx, clients, direct, o, o.warmup, nil, gw.cmd.Process.Pid, nil); err != nil {
			return nil, err
		}
	}
	logf("quiet phase %v: %d users, %d req/s", o.quiet, o.users, o.rate)
	k0 := kernelDrops()
	if rep.Quiet, rep.QuietDirect, _, err = runPhase(ctx, clients, direct, o, o.quiet, nil, gw.cmd.Process.Pid, kern); err != nil {
		return nil, err
	}
	k1 := kernelDrops()
	logf("flood phase %v: %d users, %d req/s, %d attackers", o.flood, o.users, o.rate, o.attackers)
	var floodStart time.Time
	var floodSamples []sample
	stopForward := make(chan struct{})
	var fwd sync.WaitGroup
	stopForwarding := sync.OnceFunc(func() { close(stopForward); fwd.Wait() })
	defer stopForwarding()
	if rep.Flood, rep.FloodDirect, floodSamples, err = runPhase(ctx, clients, direct, o, o.flood, func() error {
		floodStart = time.Now()
		if err := att.send("go"); err != nil {
			return err
		}
		fwd.Go(func() { gw.forwardBans(att, stopForward) })
		return nil
	}, gw.cmd.Process.Pid, kern); err != nil {
		return nil, err
	}
	k2 := kernelDrops()
	rep.Gateway.PeakRSSKiB = peakRSS(gw.cmd.Process.Pid)
	// The attackers finish their last attempts (at most -timeout) after
	// the phase; bans keep being forwarded until they report.
	rep.Attack, err = attackReport(att, o.flood+o.timeout+30*time.Second, stopForwarding)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted: %w", ctx.Err())
	}
	// The flood in two parts: the burst of the attackers' answered attempts
	// until the last answer to one that was then banned, and after it.
	if split := time.Duration(rep.Attack.LastAnswerMs * 1e6); split > 0 && split < o.flood {
		rep.FloodBurst = splitStats(floodSamples, 0, split, o.late)
		rep.FloodBanned = splitStats(floodSamples, split, o.flood, o.late)
	}
	if o.flood > time.Second {
		rep.FloodFirst = splitStats(floodSamples, 0, time.Second, o.late)
		rep.FloodRest = splitStats(floodSamples, time.Second, o.flood, o.late)
	}

	for _, c := range clients {
		c.drop()
	}
	if err := bk.finish(10 * time.Second); err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	// pbxgate refuses a source the moment it decides to ban it, but writes
	// the ban to its store (and then logs it) one at a time; give the
	// last ones time to be logged before counting.
	want := rep.Attack.Attackers - rep.Attack.NeverRefused
	logf("waiting for pbxgate to log the bans of %d attackers (at most %v)", want, o.settle)
	gw.waitBans(want, 5*time.Second, o.settle)
	if kern != nil {
		addrs := make([]netip.Addr, o.attackers)
		for i := range addrs {
			addrs[i] = attackerAddr(i)
		}
		n, err := kern.covered(addrs)
		if err != nil && rep.Kernel.Error == "" {
			rep.Kernel.Error = err.Error()
		}
		rep.Kernel.Covered = n
	}
	stopped = true
	if err := gw.stop(15 * time.Second); err != nil {
		rep.Gateway.ExitProblem = err.Error()
	}
	gw.mu.Lock()
	rep.Bans = countBans(gw.bans, gw.moreBans, floodStart, o.attackers)
	rep.Gateway.ErrorLines = gw.errors
	gw.mu.Unlock()
	if kern != nil {
		k3 := kernelDrops() // the table outlives pbxgate
		rep.Kernel.DropsQuiet, rep.Kernel.DropsFlood, rep.Kernel.DropsAfter = grown(k0, k1), grown(k1, k2), grown(k2, k3)
		rep.Kernel.Banned = rep.Bans.Attackers
	}
	if rep.Quiet.P99 > 0 {
		rep.Ratio = roundTo(rep.Flood.P99/rep.Quiet.P99, 3)
	}
	rep.Verdict = judge(rep, o.minSuccess, o.maxRatio)
	return rep, nil
}

// grown returns b-a, or 0 when a counter read as b failed (0) or went
// backwards.
func grown(a, b uint64) uint64 {
	if b < a {
		return 0
	}
	return b - a
}

// runPhase runs the legitimate load for d, and the control user direct
// (when not nil) half a user's interval after user 0. begin, when not nil,
// is called just before the first request is due (to start the attackers).
// kern, when not nil, is read every second for the kernel's drops.
func runPhase(ctx context.Context, clients []*legitClient, direct *legitClient, o options, d time.Duration, begin func() error, pid int, kern *kernelBL) (users, control *phaseStats, samples []sample, err error) {
	total := slotCount(d, o.rate)
	cpu0, _ := cpuSeconds(pid)
	tcp0 := readCounters()
	// Every client waits for its first slot; the 10 ms head start lets
	// them all reach their timers first.
	start := time.Now().Add(10 * time.Millisecond)
	if begin != nil {
		if err := begin(); err != nil {
			return nil, nil, nil, err
		}
	}
	hardStop := start.Add(d + o.timeout)
	results := make([]clientResult, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		due := clientSlots(i, len(clients), total, o.rate)
		wg.Go(func() { results[i] = c.run(ctx, start, due, hardStop) })
	}
	var directRes clientResult
	directDue := clientSlots(0, len(clients), total, o.rate)
	if direct != nil {
		half := slotTime(int64(len(clients)), o.rate) / 2
		for k := range directDue {
			directDue[k] += half
		}
		wg.Go(func() { directRes = direct.run(ctx, start, directDue, hardStop) })
	}
	// pbxgate's CPU time second by second, to tell when it was busy.
	nsec := int((d + time.Second - 1) / time.Second)
	cpuBySecond := make([]float64, nsec)
	stopSampler := make(chan struct{})
	var swg sync.WaitGroup
	busyBySecond := make([][]cpuShare, nsec)
	dropsBySecond := make([]uint64, nsec)
	swg.Go(func() {
		prev := cpu0
		t0 := cpuTimes()
		var kd0 uint64
		if kern != nil {
			kd0, _ = kern.drops() // a failure shows in the phase totals
		}
		for k := range nsec {
			select {
			case <-stopSampler:
				return
			case <-time.After(time.Until(start.Add(time.Duration(k+1) * time.Second))):
			}
			c, _ := cpuSeconds(pid)
			cpuBySecond[k], prev = roundTo(c-prev, 2), c
			t1 := cpuTimes()
			busyBySecond[k] = cpuShares(t0, t1)
			t0 = t1
			if kern != nil {
				if kd, err := kern.drops(); err == nil && kd >= kd0 {
					dropsBySecond[k], kd0 = kd-kd0, kd
				}
			}
		}
	})
	wg.Wait()
	elapsed := time.Since(start)
	close(stopSampler)
	swg.Wait()
	cpu1, _ := cpuSeconds(pid)
	tcp1 := readCounters()
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("interrupted: %w", err)
	}
	var all []sample
	var firstErr error
	for _, r := range results {
		all = append(all, r.samples...)
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	st := summarize(all, int(total), o.late)
	st.Duration = roundTo(elapsed.Seconds(), 3)
	st.GatewayCPU = roundTo(cpu1-cpu0, 2)
	st.TCP = counterDelta(tcp0, tcp1)
	st.Seconds = timeline(all, d)
	for k := range st.Seconds {
		st.Seconds[k].GatewayCPU = cpuBySecond[k]
		st.Seconds[k].CPUs = busyBySecond[k]
		if kern != nil {
			st.Seconds[k].KernelDrops = dropsBySecond[k]
		}
	}
	if firstErr != nil {
		st.FirstError = firstErr.Error()
	}
	if direct == nil {
		return &st, nil, all, nil
	}
	ct := summarize(directRes.samples, len(directDue), o.late)
	ct.Duration = st.Duration
	ct.Seconds = timeline(directRes.samples, d)
	if directRes.firstErr != nil {
		ct.FirstError = directRes.firstErr.Error()
	}
	return &st, &ct, all, nil
}

// raiseNoFile lifts the open-file soft limit to the hard one (the children
// inherit it) and checks it is enough: the attacker child holds one
// connection per attacker, pbxgate two per connection.
func raiseNoFile(o options) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("getrlimit: %w", err)
	}
	need := uint64(2*(o.attackers+o.users) + 1024)
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return fmt.Errorf("setrlimit NOFILE %d: %w", lim.Cur, err)
		}
	}
	if lim.Cur < need {
		return fmt.Errorf("open-file limit %d, need %d for %d attackers: raise the hard limit (ulimit -Hn, as root)", lim.Cur, need, o.attackers)
	}
	return nil
}

// ownNetNS fails unless this process runs in a named network namespace
// (one of /run/netns, made by ip netns add), so that -kernel-blacklist never
// changes the host's: pbxgate creates table inet pbxgate_bl in its
// namespace and, on purpose, leaves it behind.
func ownNetNS() error {
	var self syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &self); err != nil {
		return fmt.Errorf("-kernel-blacklist: which network namespace is this: %w", err)
	}
	names, _ := os.ReadDir("/run/netns") // none: not in a named one
	for _, n := range names {
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/run/netns", n.Name()), &st) == nil && st.Dev == self.Dev && st.Ino == self.Ino {
			return nil
		}
	}
	return errors.New("-kernel-blacklist: run fraudflood in a network namespace of its own (ip netns add NS; ip netns exec NS fraudflood ..., " +
		"as bench/fraud.sh does with BENCH_FRAUD_KERNEL=1): pbxgate would leave table inet pbxgate_bl in this one")
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func meta(o options) map[string]string {
	m := map[string]string{
		"date":            time.Now().UTC().Format(time.RFC3339),
		"go":              runtime.Version(),
		"cores":           strconv.Itoa(max(len(cpuTimes()), 1)), // the machine's; -meta cores=N overrides
		"gomaxprocs_tool": strconv.Itoa(runtime.GOMAXPROCS(0)),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m["loadavg_before"] = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.Command(o.pbxgate, "version").Output(); err == nil {
		m["pbxgate_version"] = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	for _, kv := range o.meta {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func setup(o options, listen string) map[string]any {
	return map[string]any{
		"users": o.users, "rate_rps": o.rate, "quiet_s": o.quiet.Seconds(), "flood_s": o.flood.Seconds(),
		"warmup_s": o.warmup.Seconds(), "attackers": o.attackers, "attempts_per_attacker": o.attempts,
		"timeout_s": o.timeout.Seconds(), "late_ms": float64(o.late) / 1e6, "attacker_nice": o.attackerNice,
		"suspicious_per_minute": o.threshold, "blacklist_for": o.blacklistFor, "suspect_rate": o.suspectRate, "unproven_concurrency": o.unproven,
		"refused_hold": o.refusedHold,
		"pbxgate_cpus": o.pbxCPUs, "pbxgate_gomaxprocs": o.pbxProcs, "listen": listen,
		"attacker_connect_timeout_s": o.connTimeout.Seconds(), "kernel_blacklist": o.kernelBL,
	}
}

// metaFlag collects repeated -meta KEY=VALUE flags.
type metaFlag []string

func (m *metaFlag) String() string { return strings.Join(*m, " ") }

func (m *metaFlag) Set(s string) error {
	if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
		return fmt.Errorf("%q: want KEY=VALUE", s)
	}
	*m = append(*m, s)
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s fraudflood: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
