package listen

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
)

// holder is a handler that signals when it starts, then reads until the
// client closes, closes and signals again.
type holder struct {
	started chan net.Conn
	closed  chan struct{}
}

func newHolder() *holder {
	return &holder{started: make(chan net.Conn, 16), closed: make(chan struct{}, 16)}
}

func (h *holder) ServeConn(ctx context.Context, c net.Conn, _ netip.Addr) error {
	h.started <- c
	_, _ = io.Copy(io.Discard, c)
	c.Close()
	h.closed <- struct{}{}
	return nil
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func TestMaxConns(t *testing.T) {
	h := newHolder()
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}, MaxConns: 2})
	req := []byte("GET / HTTP/1.1\r\n")
	var held []*net.TCPConn
	for range 2 {
		c := ts.dial(t)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		wait(t, h.started, "handler start")
		held = append(held, c)
	}
	if n := ts.Active(); n != 2 {
		t.Fatalf("Active = %d, want 2", n)
	}
	over := ts.dial(t)
	expectClosed(t, over)
	checkEvent(t, ts.onlyEvent(t), netip.MustParseAddr("127.0.0.1"), "", event.ReasonConnLimit)

	// Closing one frees its slot: the count follows Close, not the handler.
	held[0].Close()
	wait(t, h.closed, "handler close")
	if n := ts.Active(); n != 1 {
		t.Fatalf("Active = %d after one close, want 1", n)
	}
	c := ts.dial(t)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	wait(t, h.started, "handler start after release")
	if n := len(ts.events.Events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// A handler that returns at once and leaves the connection to someone else
// (as the HTTP handler does with net/http) keeps its slot until Close.
func TestCountFollowsClose(t *testing.T) {
	handed := make(chan net.Conn, 1)
	h := HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
		handed <- c
		return nil
	})
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}})
	c := ts.dial(t)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	sc := wait(t, handed, "handler")
	if n := ts.Active(); n != 1 {
		t.Fatalf("Active = %d after the handler returned, want 1", n)
	}
	sc.Close()
	sc.Close() // idempotent: the count drops once
	if n := ts.Active(); n != 0 {
		t.Fatalf("Active = %d after Close, want 0", n)
	}
	expectClosed(t, c)
}

// A handler error closes the connection.
func TestHandlerError(t *testing.T) {
	h := HandlerFunc(func(context.Context, net.Conn, netip.Addr) error { return errors.New("boom") })
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}})
	c := ts.dial(t)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	// The client may see the close before the server has counted it.
	waitInactive(t, ts.Active)
}

// waitInactive waits up to 5 s for active to return 0.
func waitInactive(t *testing.T, active func() int) {
	t.Helper()
	for i := 0; active() != 0; i++ {
		if i == 1000 {
			t.Fatalf("Active = %d, want 0", active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingListener counts reads on the connections it accepts.
type countingListener struct {
	net.Listener
	reads atomic.Int64
}

type countingConn struct {
	net.Conn
	l *countingListener
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, l: l}, nil
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.l.reads.Add(1)
	return c.Conn.Read(p)
}

func TestAllowed(t *testing.T) {
	inner, err := Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &countingListener{Listener: inner}
	var asked sync.Map
	h := newHolder()
	ts := startOn(t, ln, Config{
		Handlers: map[sniff.Proto]Handler{sniff.HTTP: h},
		Allowed: func(a netip.Addr) bool {
			asked.Store(a, true)
			return false
		},
	})
	c := ts.dial(t)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	if _, ok := asked.Load(netip.MustParseAddr("127.0.0.1")); !ok {
		t.Fatal("Allowed was not asked about 127.0.0.1")
	}
	if n := ln.reads.Load(); n != 0 {
		t.Fatalf("%d reads from a refused source, want none", n)
	}
	if evs := ts.events.Events(); len(evs) != 0 {
		t.Fatalf("events for a refused source: %+v", evs)
	}
	if n := ts.Active(); n != 0 {
		t.Fatalf("Active = %d", n)
	}
	select {
	case <-h.started:
		t.Fatal("handler called for a refused source")
	default:
	}
}

func TestReconfigure(t *testing.T) {
	outA, outB := make(chan got, 1), make(chan got, 1)
	inAllowed := make(chan struct{})
	release := make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	cfgA := Config{
		Handlers: map[sniff.Proto]Handler{sniff.HTTP: recorder("A", outA)},
		Allowed: func(netip.Addr) bool {
			if first.CompareAndSwap(true, false) {
				inAllowed <- struct{}{}
				<-release
			}
			return true
		},
	}
	ts := start(t, "tcp4", cfgA)

	// c1 is accepted under A; A is swapped for B while c1 is being
	// accepted; c1 keeps A.
	c1 := ts.dial(t)
	wait(t, inAllowed, "Allowed")
	if err := ts.Reconfigure(Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: recorder("B", outB)}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	if reply := exchange(t, c1, samples["http"]); reply != "ok:A" {
		t.Fatalf("connection accepted before the swap: reply %q", reply)
	}
	wait(t, outA, "handler A")

	c2 := ts.dial(t)
	if reply := exchange(t, c2, samples["http"]); reply != "ok:B" {
		t.Fatalf("connection after the swap: reply %q", reply)
	}
	wait(t, outB, "handler B")

	// An invalid config is refused and the old one stays.
	err := ts.Reconfigure(Config{TLSMode: TLSRequired, Handlers: map[sniff.Proto]Handler{sniff.HTTP: nil, sniff.Unknown: recorder("x", outA)}, MaxConns: -1, SniffBuffer: 10})
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"TLS: a tls.Config is required", "MaxConns", "SniffBuffer", "nil handler for http", "unknown is not a valid key"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	c3 := ts.dial(t)
	if reply := exchange(t, c3, samples["http"]); reply != "ok:B" {
		t.Fatalf("after a refused reconfigure: reply %q", reply)
	}
	wait(t, outB, "handler B")
}

func TestShutdownWaits(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	var handlerDone atomic.Bool
	h := HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
		close(started)
		<-release
		_, _ = io.WriteString(c, "done")
		c.Close()
		handlerDone.Store(true)
		return nil
	})
	ln, err := Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Name: "test"}, Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	wait(t, started, "handler")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if err := wait(t, served, "Serve to return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// The socket is closed. (Dialing its port would not tell: a parallel
	// test may already have been given the same port.)
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener after Shutdown: Accept gave %v, want net.ErrClosed", err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a handler was active", err)
	default:
	}
	close(release)
	if err := wait(t, shut, "Shutdown"); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if !handlerDone.Load() {
		t.Fatal("Shutdown returned before the handler finished")
	}
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	if b, _ := io.ReadAll(c); string(b) != "done" {
		t.Fatalf("client got %q", b)
	}
	if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// blocker is a handler that holds the connection (never closing it) until
// its context is cancelled.
func blocker(started chan<- struct{}, cancelled *atomic.Bool) Handler {
	return HandlerFunc(func(ctx context.Context, c net.Conn, _ netip.Addr) error {
		started <- struct{}{}
		<-ctx.Done()
		cancelled.Store(true)
		return nil
	})
}

func TestShutdownDeadline(t *testing.T) {
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	ln, err := Listen(context.Background(), "tcp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{}, Config{Handlers: map[sniff.Proto]Handler{sniff.SIP: blocker(started, &cancelled)}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(samples["sip"]); err != nil {
		t.Fatal(err)
	}
	wait(t, started, "handler")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if !cancelled.Load() {
		t.Fatal("handler context not cancelled by a forced Shutdown")
	}
	if n := s.Active(); n != 0 {
		t.Fatalf("Active = %d after forced Shutdown", n)
	}
	expectClosed(t, c)
	if err := wait(t, served, "Serve"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeContextCancel(t *testing.T) {
	started := make(chan struct{}, 1)
	var cancelled atomic.Bool
	ln, err := Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{}, Config{Handlers: map[sniff.Proto]Handler{sniff.LDAP: blocker(started, &cancelled)}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(samples["ldap"]); err != nil {
		t.Fatal(err)
	}
	wait(t, started, "handler")
	if err := s.Serve(context.Background(), ln); !errors.Is(err, ErrServing) {
		t.Fatalf("second Serve: %v", err)
	}
	cancel()
	if err := wait(t, served, "Serve"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if !cancelled.Load() || s.Active() != 0 {
		t.Fatalf("after Serve returned: cancelled=%v active=%d", cancelled.Load(), s.Active())
	}
	expectClosed(t, c)
}

// scriptedListener returns scripted Accept errors, then blocks until closed.
type scriptedListener struct {
	errs   chan error
	closed chan struct{}
	once   sync.Once
	calls  atomic.Int32
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	select {
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *scriptedListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *scriptedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type tempErr struct{}

func (tempErr) Error() string   { return "too many open files" }
func (tempErr) Temporary() bool { return true }
func (tempErr) Timeout() bool   { return false }

func TestAcceptErrors(t *testing.T) {
	l := &scriptedListener{errs: make(chan error, 4), closed: make(chan struct{})}
	for range 3 {
		l.errs <- &net.OpError{Op: "accept", Net: "tcp", Err: tempErr{}}
	}
	l.errs <- &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EINVAL}
	s, err := New(Options{Name: "x"}, Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: newHolder()}})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	err = s.Serve(context.Background(), l)
	if !errors.Is(err, syscall.EINVAL) || !strings.Contains(err.Error(), "listen x: accept") {
		t.Fatalf("Serve = %v, want the permanent error", err)
	}
	if n := l.calls.Load(); n != 4 {
		t.Fatalf("%d Accept calls, want 4 (3 retried)", n)
	}
	if d := time.Since(begin); d < 35*time.Millisecond {
		t.Fatalf("retried after %v, want the 5+10+20ms back-off", d)
	}
	select {
	case <-l.closed:
	default:
		t.Fatal("listener not closed when Serve returned")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Shutdown interrupts the accept back-off.
func TestShutdownDuringBackoff(t *testing.T) {
	l := &scriptedListener{errs: make(chan error, 16), closed: make(chan struct{})}
	for range 16 {
		l.errs <- tempErr{}
	}
	s, err := New(Options{}, Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: newHolder()}})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), l) }()
	// After 8 failures (5+10+...+320ms of back-off) Serve sleeps 640ms.
	for i := 0; l.calls.Load() < 8; i++ {
		if i == 5000 {
			t.Fatal("Serve stopped retrying")
		}
		time.Sleep(time.Millisecond)
	}
	begin := time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, served, "Serve"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(begin); d > 400*time.Millisecond {
		t.Fatalf("Serve returned %v after Shutdown: the back-off was not interrupted", d)
	}
}

func TestNewValidation(t *testing.T) {
	if _, err := New(Options{}, Config{TLSMode: 7, FirstBytesTimeout: -1, HandshakeTimeout: -1, Handlers: map[sniff.Proto]Handler{sniff.TLS: newHolder()}}); err == nil {
		t.Fatal("invalid config accepted")
	} else {
		for _, want := range []string{"TLSMode: invalid value 7", "FirstBytesTimeout", "HandshakeTimeout", "tls is not a valid key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	}
	s, err := New(Options{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.cfg.Load()
	if cfg.MaxConns != DefaultMaxConns || cfg.FirstBytesTimeout != DefaultFirstBytesTimeout ||
		cfg.HandshakeTimeout != DefaultHandshakeTimeout || cfg.SniffBuffer != DefaultSniffBuffer {
		t.Fatalf("defaults not applied: %+v", cfg.Config)
	}
	if TLSOptional.String() != "optional" || TLSMode(9).String() != "tlsmode(9)" {
		t.Fatal("TLSMode.String")
	}
}

// dialFrom connects from the loopback address src to addr; the connection
// is closed when the test ends.
func dialFrom(t *testing.T, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: waitTimeout}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestCloseFrom(t *testing.T) {
	h := newHolder()
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}, MaxConns: 10})
	req := []byte("GET / HTTP/1.1\r\n")
	dialFrom := func(src string) *net.TCPConn {
		c := dialFrom(t, src, ts.addr)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		wait(t, h.started, "handler start")
		return c
	}
	a1, a2 := dialFrom("127.0.0.1"), dialFrom("127.0.0.1")
	other := dialFrom("127.0.0.2")

	if n := ts.CloseFrom(netip.MustParsePrefix("127.0.0.3/32")); n != 0 {
		t.Errorf("CloseFrom(unrelated) closed %d", n)
	}
	if n := ts.CloseFrom(netip.MustParsePrefix("127.0.0.1/32")); n != 2 {
		t.Errorf("CloseFrom(127.0.0.1) closed %d, want 2", n)
	}
	expectClosed(t, a1)
	expectClosed(t, a2)
	wait(t, h.closed, "first handler return")
	wait(t, h.closed, "second handler return")

	// The other source's connection is untouched.
	_ = other.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := other.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("connection from 127.0.0.2: %v, want it still open", err)
	}
	if n := ts.CloseFrom(netip.MustParsePrefix("127.0.0.0/8")); n != 1 {
		t.Errorf("CloseFrom(127/8) closed %d, want 1", n)
	}
	expectClosed(t, other)
	wait(t, h.closed, "third handler return")
}

// TestAllowedOnTCPListener runs the guard through the accept paths a plain
// *net.TCPListener gets on Linux: refused sources are closed (after the
// first one, before a net.Conn exists), allowed ones are served, also
// behind a queue of refused ones, and each source is asked about once per
// connection.
func TestAllowedOnTCPListener(t *testing.T) {
	h := newHolder()
	var asked atomic.Int64
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}, MaxConns: 1000,
		Allowed: func(a netip.Addr) bool {
			asked.Add(1)
			return a != netip.MustParseAddr("127.0.0.66")
		}})
	dialFrom := func(src string) net.Conn { return dialFrom(t, src, ts.addr) }
	const refused = 200
	var banned []net.Conn
	for range refused {
		banned = append(banned, dialFrom("127.0.0.66"))
	}
	ok := dialFrom("127.0.0.1")
	if _, err := ok.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	wait(t, h.started, "the allowed connection served")
	for _, c := range banned {
		expectClosed(t, c)
	}
	if n := asked.Load(); n != refused+1 {
		t.Errorf("Allowed asked %d times, want %d", n, refused+1)
	}
	if n := ts.Active(); n != 1 {
		t.Errorf("Active = %d, want only the allowed connection", n)
	}
	if evs := ts.events.Events(); len(evs) != 0 {
		t.Errorf("refusals emitted %v", evs)
	}
	// After a refusal the loop accepts with accept4 on a duplicate of the
	// listener, waiting in the poller: refused connections arriving one by
	// one are closed, an allowed one arriving alone is served, and the
	// shutdown at the end wakes the wait (the test's cleanup).
	for range 3 {
		expectClosed(t, dialFrom("127.0.0.66"))
	}
	alone := dialFrom("127.0.0.2")
	if _, err := alone.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	wait(t, h.started, "the allowed connection after the refusals served")
	if n := asked.Load(); n != refused+5 {
		t.Errorf("Allowed asked %d times, want %d", n, refused+5)
	}
}

func TestGuard(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(net.Listener) net.Listener // hides *net.TCPListener: the portable path
	}{
		{"tcp listener", func(ln net.Listener) net.Listener { return ln }},
		{"other listener", func(ln net.Listener) net.Listener { return &countingListener{Listener: ln} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner, err := Listen(context.Background(), "tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := Guard(tc.wrap(inner), func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.66") })
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
				close(accepted)
			}()
			dialFrom := func(src string) net.Conn { return dialFrom(t, src, inner.Addr().String()) }
			banned := dialFrom("127.0.0.66")
			expectClosed(t, banned)
			dialFrom("127.0.0.1")
			c := wait(t, accepted, "the allowed connection")
			if c == nil {
				t.Fatal("Accept failed")
			}
			defer c.Close()
			if got := addrOf(c.RemoteAddr()); got != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("accepted %v, want 127.0.0.1", got)
			}
			// Close wakes an Accept that waits (on Linux, after the
			// refusal, on the listener's duplicate).
			errc := make(chan error, 1)
			go func() {
				_, err := ln.Accept()
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond)
			ln.Close()
			if err := wait(t, errc, "Accept to return after Close"); err == nil {
				t.Error("Accept after Close returned a connection")
			}
		})
	}
}
