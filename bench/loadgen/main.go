// Command loadgen is a constant-rate (open-loop) HTTP/1.1 load generator for
// the pbxgate benchmarks, in the spirit of wrk2: requests are scheduled at
// fixed intervals whatever the server does, and each latency is measured
// from the request's scheduled time, so a stalled server is charged for every
// request it delayed (no coordinated omission).
//
// Requests go over a fixed pool of keep-alive connections, one request at a
// time per connection (no pipelining). The scheduler writes each request
// itself, on a free connection, after a sleep with sub-millisecond precision
// (a timerfd in the netpoller on Linux); when every connection is busy the
// request waits in a queue, and the wait counts in its latency. One goroutine
// per connection reads the responses, which must carry a Content-Length
// (chunked bodies are not read). Sockets are read and written with raw
// non-blocking system calls (bench/internal/rawsock). Percentiles come from a
// log-linear histogram accurate to under 1%.
//
// The scheduler sleeps at least -quantum (50 µs) at a time and then sends
// every request that fell due, each timed from its own slot, so a request
// may leave up to one quantum late (reported as send lag, and included in
// its latency). Waking once per request cost more than the HTTP exchange
// itself on a virtual machine (a sleep and wake-up costs tens of µs of CPU
// there), and the core shared by generator and origin saturated near 22k
// req/s; batching within 50 µs keeps it below saturation at twice that rate,
// which shortens the tail far more than the quantum adds.
//
// It prints a human summary and one machine-readable line starting with
// RATERESULT. It sends only to the address it is given; the run is bounded by
// -warmup + -duration + -timeout.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/bench/internal/rawsock"
)

type options struct {
	target   *url.URL
	rate     float64
	duration time.Duration
	warmup   time.Duration
	conns    int
	timeout  time.Duration
	quantum  time.Duration // shortest pacer sleep
}

func main() {
	var (
		rawURL = flag.String("url", "", "target URL, http:// or https:// (certificate not verified)")
		o      options
	)
	flag.Float64Var(&o.rate, "rate", 1000, "requests per second")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured duration (after warm-up)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "warm-up at the same rate, not measured")
	flag.IntVar(&o.conns, "conns", 64, "keep-alive connections")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Second, "per-request deadline")
	flag.DurationVar(&o.quantum, "quantum", 50*time.Microsecond,
		"shortest pacer sleep: requests falling due within it are sent together, each still timed from its own slot")
	flag.Parse()

	u, err := url.Parse(*rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		log.Fatalf("loadgen: -url must be an http:// or https:// URL, got %q", *rawURL)
	}
	o.target = u
	if o.rate <= 0 || o.conns <= 0 || o.duration <= 0 || o.warmup < 0 || o.timeout <= 0 || o.quantum < 0 || o.quantum > time.Millisecond {
		log.Fatal("loadgen: -rate, -conns, -duration and -timeout must be positive, -warmup not negative, -quantum within 0..1ms")
	}

	// The scheduler and the connections' readers share the Go scheduler:
	// the pacer and the sockets wait in the netpoller and do their I/O with
	// raw system calls (see pacer and bench/internal/rawsock), so one P per
	// CPU, the default, is enough. Pinned to one CPU that is one P on one
	// thread, and no time goes to handing the P between threads.
	res, err := run(o)
	if err != nil {
		log.Fatalf("loadgen: %v", err)
	}
	res.print(os.Stdout, o)
}

// result is what one run measured (warm-up excluded).
type result struct {
	lat       hist // from scheduled time to full response, ns
	lag       hist // from scheduled time to the request's write, ns
	ok        uint64
	bad       uint64 // non-2xx responses
	errs      uint64 // connection or protocol errors
	dropped   uint64 // scheduled but never sent (queue full, or left at the end)
	scheduled uint64
	firstErr  error
}

func (r *result) print(w io.Writer, o options) {
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	done := float64(r.lat.total) / o.duration.Seconds()
	fmt.Fprintf(w, "target %s rate %.0f/s conns %d: %d responses in %v (%.0f/s), %d errors, %d non-2xx, %d dropped\n",
		o.target, o.rate, o.conns, r.lat.total, o.duration, done, r.errs, r.bad, r.dropped)
	fmt.Fprintf(w, "latency p50 %.0fus p90 %.0fus p99 %.0fus p99.9 %.0fus max %.0fus\n",
		us(r.lat.quantile(.5)), us(r.lat.quantile(.9)), us(r.lat.quantile(.99)), us(r.lat.quantile(.999)), us(r.lat.max))
	fmt.Fprintf(w, "send lag (schedule to write, included above) p50 %.0fus p99 %.0fus\n", us(r.lag.quantile(.5)), us(r.lag.quantile(.99)))
	if r.firstErr != nil {
		fmt.Fprintf(w, "first error: %v\n", r.firstErr)
	}
	fmt.Fprintf(w, "RATERESULT target_rps=%.0f rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f scheduled=%d responses=%d errors=%d non2xx=%d dropped=%d lag_p99_us=%.0f\n",
		o.rate, done, us(r.lat.quantile(.5)), us(r.lat.quantile(.9)), us(r.lat.quantile(.99)), us(r.lat.quantile(.999)), us(r.lat.max),
		r.scheduled, r.lat.total, r.errs, r.bad, r.dropped, us(r.lag.quantile(.99)))
}

// gen is one run's shared state.
type gen struct {
	o        options
	host     string // host:port to dial
	req      []byte
	start    time.Time
	from, to time.Duration // measured window, as offsets of scheduled times from start

	free  chan *conn         // idle connections
	queue chan time.Duration // scheduled requests waiting for a connection

	stopping       atomic.Bool
	ok, bad, errs  atomic.Uint64
	firstErr       atomic.Value // error
	firstErrStored atomic.Bool
}

func (g *gen) measured(at time.Duration) bool { return at >= g.from && at < g.to }

func (g *gen) fail(at time.Duration, err error) {
	if at >= 0 && !g.measured(at) {
		return
	}
	g.errs.Add(1)
	if g.firstErrStored.CompareAndSwap(false, true) {
		g.firstErr.Store(err)
	}
}

// conn is one keep-alive connection. It is either in gen.free (nobody owns
// it), or owned by whoever took it from there until its reader has read the
// response.
type conn struct {
	g      *gen
	nc     atomic.Pointer[net.Conn]
	br     *bufio.Reader // used by the reader goroutine only
	at     atomic.Int64  // scheduled offset of the request in flight, -1 if none
	sentAt atomic.Int64  // wall clock (ns) when it was written, for the watchdog
	lat    hist          // reader goroutine only
	lag    hist          // requests sent by this connection's reader goroutine
}

func run(o options) (*result, error) {
	host := o.target.Host
	if o.target.Port() == "" {
		if o.target.Scheme == "https" {
			host = net.JoinHostPort(o.target.Hostname(), "443")
		} else {
			host = net.JoinHostPort(o.target.Hostname(), "80")
		}
	}
	g := &gen{
		o:    o,
		host: host,
		req:  []byte("GET " + o.target.RequestURI() + " HTTP/1.1\r\nHost: " + o.target.Host + "\r\nUser-Agent: pbxgate-bench-loadgen\r\n\r\n"),
		from: o.warmup,
		to:   o.warmup + o.duration,
		free: make(chan *conn, o.conns),
		// Up to one second of requests may wait; beyond that the target is
		// hopelessly behind and further slots are dropped.
		queue: make(chan time.Duration, max(1024, min(int(o.rate), 1<<20))),
	}
	conns := make([]*conn, o.conns)
	for i := range conns {
		c := &conn{g: g}
		c.at.Store(-1)
		nc, err := g.dial()
		if err != nil {
			for _, c := range conns[:i] {
				(*c.nc.Load()).Close()
			}
			return nil, fmt.Errorf("connect %d of %d: %w", i+1, o.conns, err)
		}
		c.setConn(nc)
		conns[i] = c
	}

	g.start = time.Now()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.readLoop()
		}()
		g.free <- c
	}
	watchDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.watchdog(conns, watchDone)
	}()

	var sched hist // lag of requests the scheduler sent itself
	scheduled, dropped, schedErr := g.schedule(&sched)

	// Let the requests in flight finish, then stop.
	deadline := time.Now().Add(o.timeout)
	for len(g.free) < o.conns && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	g.stopping.Store(true)
	close(watchDone)
	for _, c := range conns {
		(*c.nc.Load()).Close()
	}
	wg.Wait()
	for len(g.queue) > 0 {
		if g.measured(<-g.queue) {
			dropped++
		}
	}

	res := &result{
		ok: g.ok.Load(), bad: g.bad.Load(), errs: g.errs.Load(),
		dropped: dropped, scheduled: scheduled,
	}
	res.lag.merge(&sched)
	for _, c := range conns {
		res.lat.merge(&c.lat)
		res.lag.merge(&c.lag)
	}
	if e, ok := g.firstErr.Load().(error); ok {
		res.firstErr = e
	}
	if schedErr != nil {
		return nil, schedErr
	}
	return res, nil
}

// schedule issues requests at the constant rate until the end of the run and
// returns how many measured requests were scheduled and dropped. An error
// means the pacer failed and the run was cut short.
func (g *gen) schedule(lag *hist) (scheduled, dropped uint64, err error) {
	p, err := newPacer()
	if err != nil {
		return 0, 0, err
	}
	defer p.close()
	interval := time.Duration(float64(time.Second) / g.o.rate)
	for i := int64(0); ; i++ {
		at := time.Duration(i) * interval
		if at >= g.to {
			return scheduled, dropped, nil
		}
		if d := at - time.Since(g.start); d > 0 {
			if err := p.sleep(max(d, g.o.quantum)); err != nil {
				return scheduled, dropped, err
			}
		}
		if g.measured(at) {
			scheduled++
		}
		select {
		case g.queue <- at:
		default:
			if g.measured(at) {
				dropped++
			}
		}
		g.dispatch(lag)
	}
}

// dispatch sends queued requests, oldest first, while connections are free.
func (g *gen) dispatch(lag *hist) {
	for len(g.queue) > 0 {
		var c *conn
		select {
		case c = <-g.free:
		default:
			return
		}
		select {
		case at := <-g.queue:
			c.send(at, lag)
		default:
			g.free <- c
			return
		}
	}
}

// release hands c, whose response was read, to the oldest queued request or
// back to the free list. Re-checking the queue after freeing c pairs with the
// scheduler's check of the free list after queueing, so no request waits
// while a connection is idle.
func (c *conn) release() {
	select {
	case at := <-c.g.queue:
		c.send(at, &c.lag)
		return
	default:
	}
	c.g.free <- c
	c.g.dispatch(&c.lag)
}

// send writes one request scheduled at offset at. On a write error the
// connection is closed; its reader reports the failure.
func (c *conn) send(at time.Duration, lag *hist) {
	g := c.g
	c.at.Store(int64(at))
	now := time.Now()
	c.sentAt.Store(now.UnixNano())
	if g.measured(at) {
		lag.record(uint64(now.Sub(g.start) - at))
	}
	if _, err := (*c.nc.Load()).Write(g.req); err != nil {
		(*c.nc.Load()).Close()
	}
}

// readLoop reads one response per request sent on c until the run stops.
func (c *conn) readLoop() {
	g := c.g
	for {
		_, err := c.br.Peek(1)
		if g.stopping.Load() {
			return
		}
		at := time.Duration(c.at.Load())
		if err == nil && at < 0 {
			err = errors.New("bytes received with no request in flight")
		}
		if err == nil {
			var status int
			var closeAfter bool
			status, closeAfter, err = readResponse(c.br)
			if err == nil {
				if g.measured(at) {
					c.lat.record(uint64(time.Since(g.start) - at))
					if status >= 200 && status < 300 {
						g.ok.Add(1)
					} else {
						g.bad.Add(1)
					}
				}
				c.at.Store(-1)
				if !closeAfter {
					c.release()
					continue
				}
			}
		}
		if err != nil {
			g.fail(at, err)
		}
		c.at.Store(-1)
		if !c.redial() {
			return
		}
		c.release()
	}
}

// redial replaces c's connection, retrying until it works or the run stops.
func (c *conn) redial() bool {
	(*c.nc.Load()).Close()
	for !c.g.stopping.Load() {
		nc, err := c.g.dial()
		if err == nil {
			c.setConn(nc)
			return true
		}
		c.g.fail(-1, err)
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func (c *conn) setConn(nc net.Conn) {
	c.nc.Store(&nc)
	c.br = bufio.NewReaderSize(nc, 16<<10)
}

// watchdog closes connections whose request has waited longer than the
// timeout; their readers then report the error and reconnect.
func (g *gen) watchdog(conns []*conn, done <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			for _, c := range conns {
				if c.at.Load() >= 0 && now.UnixNano()-c.sentAt.Load() > int64(g.o.timeout) {
					(*c.nc.Load()).Close()
				}
			}
		}
	}
}

func (g *gen) dial() (net.Conn, error) {
	d := net.Dialer{Timeout: g.o.timeout}
	c, err := d.Dial("tcp", g.host)
	if err != nil {
		return nil, err
	}
	c = rawsock.Wrap(c)
	if g.o.target.Scheme != "https" {
		return c, nil
	}
	tc := tls.Client(c, &tls.Config{
		ServerName:         g.o.target.Hostname(),
		InsecureSkipVerify: true, // benchmark against a throw-away self-signed certificate
		NextProtos:         []string{"http/1.1"},
	})
	tc.SetDeadline(time.Now().Add(g.o.timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

var errNoLength = errors.New("response without Content-Length (chunked bodies not supported)")

// readResponse reads one response head and its Content-Length body.
func readResponse(br *bufio.Reader) (status int, closeAfter bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(value))
			if err != nil || n < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
			length = n
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			closeAfter = true
		}
	}
	if length < 0 {
		return 0, false, errNoLength
	}
	if _, err := br.Discard(length); err != nil {
		return 0, false, err
	}
	return status, closeAfter, nil
}
