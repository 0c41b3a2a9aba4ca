// Command turnload is the load generator of bench/turn.sh: it measures one
// STUN/TURN server over UDP on loopback, one mode per run, and prints one
// machine-readable line "TURNLOAD mode=... key=value ...".
//
//	turnload binding  STUN Binding requests/s (closed loop)
//	turnload alloc    allocations/s: Allocate (with the 401 round trip) and
//	                  Refresh(lifetime 0), each on a fresh client socket
//	turnload relay    relayed packets/s through N allocations, each with a
//	                  channel to an echo peer the tool runs (closed loop)
//	turnload streams  N concurrent G.711-like streams (172-byte payload every
//	                  20 ms each way) through channels to the echo peer, open
//	                  loop; the loss and round-trip times over a fixed window
//	turnload mem      hold N allocations (at several levels) and read the
//	                  server's VmRSS at each
//	turnload report RAW TXT JSON
//	                  bench/turn.sh's table from its raw results; exit 1 when
//	                  a target is not met
//
// Closed loop for the throughput modes: each client socket keeps a fixed
// window of requests (or packets) outstanding and sends the next one when an
// answer arrives; one unanswered for -stall (100 ms) is counted lost and its
// place reused (window.go). The server then runs at its own pace with a
// bounded queue, and the rate measured is what it completes; an open loop at
// rising rates would find much the same ceiling, with more runs and with the
// result depending on how a server behaves once its socket buffer
// overflows. The streams mode is the open-loop, latency-and-loss view:
// packets leave on a fixed 20 ms schedule whatever the server does.
//
// Credentials are TURN REST API pairs (username "<expiry>:u<i>", password
// base64(HMAC-SHA1(secret, username))), computed here and not with pbxgate's
// code, or one static user (-user, -password). The 401's realm must be
// -realm, so that a stranger answering on the port (SO_REUSEPORT) fails the
// run instead of being measured.
//
// Client sockets are connected UDP sockets from 127.0.0.1..127.0.0.32 and
// ports taken in turn from the ephemeral range (source.go), so a 5-tuple is
// not reused while a server may still remember it. Datagrams are read and
// written with recvmmsg/sendmmsg through raw system calls (batch_linux.go):
// the tool shares one CPU with nothing but itself and must stay cheaper
// than the server it drives.
//
// Every run reads, over its measured window: the server's CPU time (-pid),
// its own, and what the rest of the machine used (other_cpu; on the
// server's CPUs with -server-cpus), so that the report can tell a server
// limit from a harness limit and a disturbed run from a clean one; and from
// /proc/net/udp, the datagrams the kernel dropped for full receive buffers
// on the server's listener, its relay sockets and the tool's own sockets.
//
// It is part of the benchmark harness, not of pbxgate. It sends only to the
// server address it is given and to its own echo peers on 127.0.0.1; every
// run is bounded by its warm-up, window and timeouts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var errDeadline = os.ErrDeadlineExceeded

func main() {
	log.SetFlags(0)
	log.SetPrefix("turnload: ")
	if len(os.Args) < 2 {
		usage()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	mode, args := os.Args[1], os.Args[2:]
	var err error
	switch mode {
	case "binding", "alloc", "relay", "streams", "mem":
		var res *result
		res, err = run(ctx, mode, args)
		if err == nil {
			fmt.Println(res)
		}
	case "report":
		if len(args) != 3 {
			usage()
		}
		var pass bool
		pass, err = report(os.Stdout, args[0], args[1], args[2])
		if err == nil && !pass {
			stop()
			os.Exit(1)
		}
	default:
		usage()
	}
	if err != nil {
		stop()
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: turnload binding|alloc|relay|streams|mem -server HOST:PORT [flags]\n       turnload report RAW TXT JSON\nrun turnload MODE -h for a mode's flags")
	os.Exit(2)
}

// common are the flags every mode shares.
type common struct {
	server   netip.AddrPort
	realm    string
	secret   string
	user     string
	password string
	users    int
	pid      int
	timeout  time.Duration
	warmup   time.Duration
	window   time.Duration
	nsrc     int
	src      *sources
	srvCPUs  []int
}

func (c *common) credential(i int) credential {
	if c.user != "" {
		return staticCredential(c.user, c.password, c.realm)
	}
	return restCredential(c.secret, "u"+strconv.Itoa(i%c.users), c.realm, time.Now().Add(24*time.Hour))
}

// run parses the flags of mode and runs it.
func run(ctx context.Context, mode string, args []string) (*result, error) {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	var c common
	server := fs.String("server", "", "the server's UDP address, HOST:PORT (required)")
	fs.StringVar(&c.realm, "realm", "", "the server's realm (required but for binding)")
	fs.StringVar(&c.secret, "secret", "", "TURN REST API shared secret")
	fs.StringVar(&c.user, "user", "", "static user instead of REST credentials")
	fs.StringVar(&c.password, "password", "", "the static user's password")
	fs.IntVar(&c.users, "users", 1000, "REST users u0..u<users-1>, taken in turn")
	fs.IntVar(&c.pid, "pid", 0, "the server's process id, for its CPU time (and memory in mem); 0: not read")
	fs.DurationVar(&c.timeout, "timeout", 2*time.Second, "wait for a STUN answer (no retransmissions)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "load before the measured window")
	fs.DurationVar(&c.window, "duration", 5*time.Second, "the measured window")
	cpuprofile := fs.String("cpuprofile", "", "write the tool's own CPU profile to this file (to see where the harness spends its time)")
	fs.Func("server-cpus", "the CPUs the server is pinned to, comma-separated: the run reports what other processes used on them (other_cpu_server)", func(v string) error {
		c.srvCPUs = c.srvCPUs[:0]
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 0 {
				return fmt.Errorf("bad CPU %q", f)
			}
			c.srvCPUs = append(c.srvCPUs, n)
		}
		return nil
	})
	fs.IntVar(&c.nsrc, "sources", 32, "client source addresses 127.0.0.1..127.0.0.<sources>")
	var m modeRunner
	switch mode {
	case "binding":
		m = newBinding(fs)
	case "alloc":
		m = newAlloc(fs)
	case "relay":
		m = newRelay(fs)
	case "streams":
		m = newStreams(fs)
	case "mem":
		m = newMem(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%s: unexpected arguments %q", mode, fs.Args())
	}
	ap, err := netip.ParseAddrPort(*server)
	if err != nil {
		return nil, fmt.Errorf("%s: -server: %w", mode, err)
	}
	c.server = ap
	if c.src, err = newSources(ap, c.nsrc); err != nil {
		return nil, fmt.Errorf("%s: %w", mode, err)
	}
	switch {
	case (c.user == "" && c.secret == "" || c.realm == "") && mode != "binding":
		return nil, fmt.Errorf("%s: needs -realm, and -secret or -user", mode)
	case c.users < 1, c.timeout <= 0, c.warmup < 0, c.window <= 0:
		return nil, fmt.Errorf("%s: -users, -timeout and -duration must be positive, -warmup not negative", mode)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", mode, err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	res := &result{}
	res.add("mode", mode)
	if err := m.run(ctx, &c, res); err != nil {
		return nil, fmt.Errorf("%s: %w", mode, err)
	}
	return res, nil
}

type modeRunner interface {
	check() error
	run(ctx context.Context, c *common, res *result) error
}

// result is the TURNLOAD line: key=value pairs in the order added.
type result struct {
	kv []string
}

func (r *result) add(k string, v any) {
	s := fmt.Sprint(v)
	switch v := v.(type) {
	case float64:
		s = strconv.FormatFloat(v, 'f', 2, 64)
	case time.Duration:
		s = strconv.FormatFloat(v.Seconds(), 'f', 6, 64)
	}
	r.kv = append(r.kv, k+"="+strings.NewReplacer(" ", "_", "=", ":", "\n", "_").Replace(s))
}

func (r *result) String() string { return "TURNLOAD " + strings.Join(r.kv, " ") }

// meter is the measured window: workers count only while on is set. It
// reads the server's and the tool's CPU time at both ends.
type meter struct {
	on, done atomic.Bool // done: past the window; workers stop
	start    time.Time
	elapsed  time.Duration
	srvCPU   time.Duration
	genCPU   time.Duration
	busy     time.Duration // all CPUs' busy time: minus the two above, the rest of the machine
	srvBusy  time.Duration // busy time of the server's CPUs (srvCPUs), when known
	srvCPUs  []int
	srvKnown bool
	pid      int
	cpuErr   error
}

// measure waits warmup, opens the window for secs, then closes it and sets
// done. It returns early (with ctx's error) when ctx ends.
func (m *meter) measure(ctx context.Context, warmup, secs time.Duration) error {
	if err := sleepCtx(ctx, warmup); err != nil {
		m.done.Store(true)
		return err
	}
	s0, err := m.cpu()
	g0, _ := cpuTime(0)
	b0, errb := readCPUBusy()
	m.start = time.Now()
	m.on.Store(true)
	err2 := sleepCtx(ctx, secs)
	m.on.Store(false)
	m.elapsed = time.Since(m.start)
	m.done.Store(true)
	s1, err3 := m.cpu()
	g1, _ := cpuTime(0)
	b1, errb2 := readCPUBusy()
	m.srvCPU, m.genCPU, m.busy = s1-s0, g1-g0, b1.all-b0.all
	if len(m.srvCPUs) > 0 {
		x0, ok0 := b0.on(m.srvCPUs)
		x1, ok1 := b1.on(m.srvCPUs)
		m.srvBusy, m.srvKnown = x1-x0, ok0 && ok1
	}
	m.cpuErr = errors.Join(err, err3, errb, errb2)
	return err2
}

func (m *meter) cpu() (time.Duration, error) {
	if m.pid <= 0 {
		return 0, nil
	}
	return cpuTime(m.pid)
}

// report adds the window's length and CPU times; ops is the operation
// count the per-operation CPU cost is computed for.
func (m *meter) report(res *result, ops int64) {
	res.add("secs", m.elapsed)
	if m.pid > 0 && m.cpuErr == nil {
		res.add("server_cpu", m.srvCPU)
		if ops > 0 {
			res.add("server_cpu_us", float64(m.srvCPU.Microseconds())/float64(ops))
		}
	}
	res.add("gen_cpu", m.genCPU)
	if m.cpuErr == nil {
		// What the rest of the machine used: other processes, and kernel
		// work not charged to either process. Large values mean the run
		// was disturbed.
		res.add("other_cpu", max(m.busy-m.srvCPU-m.genCPU, 0))
		if m.srvKnown && m.pid > 0 {
			// What others took from the server's own CPU(s): the number
			// that matters when the server is pinned.
			res.add("other_cpu_server", max(m.srvBusy-m.srvCPU, 0))
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// rate is n per second of d.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
