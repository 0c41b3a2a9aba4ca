package udprelay

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds every blocking read of a test.
const waitFor = 5 * time.Second

// clock is an injectable clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// listenUDP opens a loopback socket on addr ("127.0.0.1:0", "[::1]:0").
func listenUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func localAP(c *net.UDPConn) netip.AddrPort {
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// packet is one datagram received by a test peer.
type packet struct {
	data string
	from netip.AddrPort
}

// recv reads one datagram or fails the test after waitFor.
func recv(t testing.TB, c *net.UDPConn) packet {
	t.Helper()
	buf := make([]byte, bufSize)
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %v: %v", c.LocalAddr(), err)
	}
	return packet{string(buf[:n]), from}
}

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, data string) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort([]byte(data), to); err != nil {
		t.Fatalf("send to %v: %v", to, err)
	}
}

// harness is a running relay with one backend socket.
type harness struct {
	t       testing.TB
	r       *Relay
	pub     netip.AddrPort // relay's public address
	backend *net.UDPConn
	clock   *clock
	events  *event.Recorder
	served  chan error

	mu     sync.Mutex
	routed []netip.AddrPort // sources Route saw
	closed []CloseReason
}

// start runs a relay on host ("127.0.0.1" or "::1") whose Route sends every
// flow to the harness's backend. cfg.Route and cfg.OnClose are set if nil.
func start(t testing.TB, host string, cfg Config, setup func(*Relay)) *harness {
	t.Helper()
	hostPort := netip.AddrPortFrom(netip.MustParseAddr(host), 0).String()
	h := &harness{t: t, clock: newClock(), events: &event.Recorder{}, served: make(chan error, 1)}
	h.backend = listenUDP(t, hostPort)
	be := localAP(h.backend)
	if cfg.Route == nil {
		cfg.Route = func(src netip.AddrPort, first []byte) (netip.AddrPort, bool) {
			h.mu.Lock()
			h.routed = append(h.routed, src)
			h.mu.Unlock()
			return be, true
		}
	}
	if cfg.OnClose == nil {
		cfg.OnClose = func(f *Flow, why CloseReason) {
			h.mu.Lock()
			h.closed = append(h.closed, why)
			h.mu.Unlock()
		}
	}
	r, err := New(cfg, Options{Name: "udp-test", Proto: "sip", Events: h.events, Now: h.clock.Now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.r = r
	if setup != nil {
		setup(r)
	}
	pc, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(hostPort)))
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	h.pub = localAP(pc)
	go func() { h.served <- r.ServePacket(context.Background(), pc) }()
	t.Cleanup(func() { h.stop() })
	// Tests may call the datagram handlers directly: wait until serving.
	deadline := time.Now().Add(waitFor)
	for {
		r.mu.Lock()
		up := r.up
		r.mu.Unlock()
		if up != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ServePacket did not start")
		}
		runtime.Gosched()
	}
	return h
}

// stop closes the relay and checks ServePacket returned nil.
func (h *harness) stop() {
	h.t.Helper()
	if err := h.r.Close(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
	select {
	case err := <-h.served:
		if err != nil {
			h.t.Errorf("ServePacket: %v", err)
		}
		h.served <- nil // later stop calls see nil too
	case <-time.After(waitFor):
		h.t.Fatal("ServePacket did not return")
	}
}

func (h *harness) routedSources() []netip.AddrPort {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]netip.AddrPort(nil), h.routed...)
}

func (h *harness) closeReasons() []CloseReason {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]CloseReason(nil), h.closed...)
}

// roundTrip sends data from c through the relay, checks the backend gets
// it, answers, and checks c gets the answer. It returns the backend's view
// of the flow's source (the upstream socket).
func (h *harness) roundTrip(c *net.UDPConn, data string) netip.AddrPort {
	h.t.Helper()
	send(h.t, c, h.pub, data)
	p := recv(h.t, h.backend)
	if p.data != data {
		h.t.Fatalf("backend got %q, want %q", p.data, data)
	}
	send(h.t, h.backend, p.from, "re:"+data)
	q := recv(h.t, c)
	if q.data != "re:"+data || q.from != h.pub {
		h.t.Fatalf("client got %q from %v, want %q from %v", q.data, q.from, "re:"+data, h.pub)
	}
	return p.from
}

// flowOf returns the open flow of client c, nil if none.
func (h *harness) flowOf(c *net.UDPConn) *Flow {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	return h.r.flows[localAP(c)]
}
