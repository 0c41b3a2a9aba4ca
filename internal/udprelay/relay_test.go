package udprelay

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

func TestFlowBothWays(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			h := start(t, host, Config{}, nil)
			c := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(host), 0).String())

			up := h.roundTrip(c, "REGISTER 1")
			f := h.flowOf(c)
			if f == nil {
				t.Fatal("no flow after the first datagram")
			}
			if f.Client != localAP(c) || f.Backend != localAP(h.backend) || f.Upstream != up {
				t.Errorf("flow = %v→%v via %v, want %v→%v via %v", f.Client, f.Backend, f.Upstream, localAP(c), localAP(h.backend), up)
			}
			if f.Established() {
				t.Error("established before the client answered")
			}

			// The same client keeps its upstream socket.
			if up2 := h.roundTrip(c, "REGISTER 2"); up2 != up {
				t.Errorf("second datagram left from %v, want the flow's %v", up2, up)
			}
			if !f.Established() {
				t.Error("not established after the client answered the backend")
			}

			// A request from the backend (an incoming call) reaches the
			// client through the flow. A stranger sending to the upstream
			// socket is filtered by the kernel (connected socket): the
			// client's next datagram is the backend's.
			stranger := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(host), 0).String())
			send(t, stranger, up, "SPOOF")
			send(t, h.backend, up, "INVITE")
			if p := recv(t, c); p.data != "INVITE" || p.from != h.pub {
				t.Fatalf("client got %q from %v, want INVITE from %v", p.data, p.from, h.pub)
			}

			// Another client gets a flow of its own.
			c2 := listenUDP(t, netip.AddrPortFrom(netip.MustParseAddr(host), 0).String())
			if up3 := h.roundTrip(c2, "OPTIONS"); up3 == up {
				t.Errorf("second client shares upstream socket %v", up)
			}

			st := h.r.Stats()
			want := Stats{Flows: 2, Unconfirmed: 1, FlowsOpened: 2, Received: 3, FromClient: 3, ToClient: 4}
			if st != want {
				t.Errorf("Stats = %+v\nwant %+v", st, want)
			}
			if got := h.routedSources(); !slices.Equal(got, []netip.AddrPort{localAP(c), localAP(c2)}) {
				t.Errorf("Route saw %v, want one call per client", got)
			}
			if fc, fb := f.Packets(); fc != 2 || fb != 3 {
				t.Errorf("flow packets = %d/%d, want 2/3", fc, fb)
			}
		})
	}
}

// TestGuardBeforeRoute: a banned source never reaches Route or Inspect.
func TestGuardBeforeRoute(t *testing.T) {
	banned := netip.MustParseAddr("127.0.0.2")
	var mu sync.Mutex
	var inspected []netip.AddrPort // guarded by mu
	h := start(t, "127.0.0.1", Config{
		Allowed: func(a netip.Addr) bool { return a != banned },
		Inspect: func(f *Flow, b []byte, fromClient bool, _ []byte) Verdict {
			mu.Lock()
			inspected = append(inspected, f.Client)
			mu.Unlock()
			return Pass(b)
		},
	}, nil)
	bad := listenUDP(t, "127.0.0.2:0")
	good := listenUDP(t, "127.0.0.1:0")
	send(t, bad, h.pub, "REGISTER evil")
	send(t, bad, h.pub, "REGISTER evil again")
	// The relay reads in order: once the good client's datagram reached
	// the backend, the banned ones have been handled.
	send(t, good, h.pub, "REGISTER good")
	if p := recv(t, h.backend); p.data != "REGISTER good" {
		t.Fatalf("backend got %q", p.data)
	}
	mu.Lock()
	seen := append(h.routedSources(), inspected...)
	mu.Unlock()
	for _, src := range seen {
		if src.Addr() == banned {
			t.Errorf("banned source %v reached Route/Inspect", src)
		}
	}
	st := h.r.Stats()
	if st.DroppedGuard != 2 || st.Flows != 1 || st.Received != 3 {
		t.Errorf("Stats = %+v, want 2 dropped by the guard and 1 flow", st)
	}
	if ev := h.events.Events(); len(ev) != 0 {
		t.Errorf("guard drops emitted events: %v", ev)
	}
}

// dropPrefixed drops datagrams starting with "drop".
func dropPrefixed(f *Flow, b []byte, fromClient bool, _ []byte) Verdict {
	if strings.HasPrefix(string(b), "drop") {
		return Verdict{}
	}
	return Pass(b)
}

// TestInspectRewritesAndReplies: Inspect's rewrite is what is relayed and
// its reply goes back to the sender, in both directions, including for the
// first datagram of a flow that Inspect refuses.
func TestInspectRewritesAndReplies(t *testing.T) {
	inspect := func(f *Flow, b []byte, fromClient bool, scratch []byte) Verdict {
		if len(scratch) != ScratchSize {
			panic("scratch has the wrong size")
		}
		msg := string(b)
		switch {
		case strings.HasPrefix(msg, "refuse"):
			return Verdict{Reply: append(scratch[:0], "refused: "+msg...)}
		case strings.HasPrefix(msg, "answer"):
			fwd := append(scratch[:0], "fwd "+msg...)
			reply := append(scratch[len(fwd):len(fwd)], "ack "+msg...)
			return Verdict{Forward: fwd, Reply: reply}
		}
		return Pass(b)
	}
	h := start(t, "127.0.0.1", Config{Inspect: inspect}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	send(t, c, h.pub, "refuse first") // no flow, but an answer
	if p := recv(t, c); p.data != "refused: refuse first" || p.from != h.pub {
		t.Fatalf("client got %q from %v", p.data, p.from)
	}
	// The reply can reach the client before the relay has counted it.
	if st := waitStats(h.r, func(st Stats) bool { return st.DroppedInspect == 1 && st.Replies == 1 }); st.FlowsOpened != 0 || st.DroppedInspect != 1 || st.Replies != 1 {
		t.Fatalf("Stats = %+v: a refused first datagram opened a flow", st)
	}
	send(t, c, h.pub, "answer me")
	if p := recv(t, c); p.data != "ack answer me" {
		t.Fatalf("client got %q", p.data)
	}
	p := recv(t, h.backend)
	if p.data != "fwd answer me" {
		t.Fatalf("backend got %q", p.data)
	}
	up := p.from
	send(t, h.backend, up, "refuse incoming")
	if p := recv(t, h.backend); p.data != "refused: refuse incoming" || p.from != up {
		t.Fatalf("backend got %q from %v, want the reply from the flow's socket %v", p.data, p.from, up)
	}
	send(t, h.backend, up, "answer back")
	if p := recv(t, h.backend); p.data != "ack answer back" {
		t.Fatalf("backend got %q", p.data)
	}
	if p := recv(t, c); p.data != "fwd answer back" {
		t.Fatalf("client got %q", p.data)
	}
	if st := waitStats(h.r, func(st Stats) bool { return st.Replies == 4 && st.DroppedInspect == 2 }); st.Replies != 4 || st.FromClient != 1 || st.ToClient != 1 || st.DroppedInspect != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestRouteAndInspectDrop(t *testing.T) {
	h := start(t, "127.0.0.1", Config{
		Inspect: dropPrefixed,
	}, nil)
	be := localAP(h.backend)
	if err := h.r.Reconfigure(Config{
		Route: func(src netip.AddrPort, first []byte) (netip.AddrPort, bool) {
			return be, !strings.HasPrefix(string(first), "garbage")
		},
		Inspect: dropPrefixed,
	}); err != nil {
		t.Fatal(err)
	}
	c := listenUDP(t, "127.0.0.1:0")
	send(t, c, h.pub, "garbage \x00\xff")    // Route refuses: no flow
	send(t, c, h.pub, "drop first")          // Inspect refuses the first datagram: no flow
	up := h.roundTrip(c, "REGISTER")         // opens the flow
	send(t, c, h.pub, "drop from client")    // dropped
	send(t, h.backend, up, "drop to client") // dropped
	h.roundTrip(c, "OPTIONS")                // the flow still works; the drops did not arrive first
	st := h.r.Stats()
	if st.DroppedRoute != 1 || st.DroppedInspect != 3 || st.FlowsOpened != 1 || st.FromClient != 2 || st.ToClient != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestOversize(t *testing.T) {
	h := start(t, "127.0.0.1", Config{MaxDatagram: 100}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	send(t, c, h.pub, strings.Repeat("x", 101))
	up := h.roundTrip(c, strings.Repeat("y", 97)) // the answer has 100
	send(t, h.backend, up, strings.Repeat("z", 101))
	h.roundTrip(c, "ok")
	st := h.r.Stats()
	if st.DroppedOversize != 2 || st.FromClient != 2 || st.ToClient != 2 {
		t.Errorf("Stats = %+v", st)
	}
	ev := h.events.Events()
	if len(ev) != 1 || ev[0].Kind != event.RejectedByGateway || ev[0].Reason != event.ReasonBadRequest ||
		ev[0].Source != localAP(c).Addr() || ev[0].Listener != "udp-test" || ev[0].Proto != "sip" {
		t.Errorf("events = %+v, want one bad_request", ev)
	}
}

func TestCloseFrom(t *testing.T) {
	h := start(t, "127.0.0.1", Config{}, nil)
	keep := listenUDP(t, "127.0.0.1:0")
	ban1 := listenUDP(t, "127.0.0.3:0")
	ban2 := listenUDP(t, "127.0.0.3:0")
	h.roundTrip(keep, "a")
	up1 := h.roundTrip(ban1, "b")
	h.roundTrip(ban2, "c")
	if n := h.r.CloseFrom(netip.MustParsePrefix("::ffff:127.0.0.3/128")); n != 2 {
		t.Fatalf("CloseFrom = %d, want 2", n)
	}
	if n := h.r.CloseFrom(netip.MustParsePrefix("127.0.0.3/32")); n != 0 {
		t.Fatalf("second CloseFrom = %d, want 0", n)
	}
	// The banned flow's upstream socket is closed: its port is free.
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(up1))
	if err != nil {
		t.Errorf("upstream socket %v still open: %v", up1, err)
	} else {
		_ = c.Close()
	}
	h.roundTrip(keep, "still here")
	if st := h.r.Stats(); st.Flows != 1 || st.FlowsClosed != 2 {
		t.Errorf("Stats = %+v", st)
	}
	if got := h.closeReasons(); !slices.Equal(got, []CloseReason{ClosedByPrefix, ClosedByPrefix}) {
		t.Errorf("OnClose reasons = %v", got)
	}
}

func TestIdleExpiry(t *testing.T) {
	h := start(t, "127.0.0.1", Config{IdleTimeout: time.Hour}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	up := h.roundTrip(c, "REGISTER")

	h.clock.Advance(59 * time.Minute)
	if n := h.r.sweep(); n != 0 {
		t.Fatalf("swept %d flows before the idle timeout", n)
	}
	// Traffic from the backend refreshes the flow.
	send(t, h.backend, up, "OPTIONS")
	if p := recv(t, c); p.data != "OPTIONS" {
		t.Fatalf("client got %q", p.data)
	}
	h.clock.Advance(59 * time.Minute)
	if n := h.r.sweep(); n != 0 {
		t.Fatalf("swept %d flows refreshed by the backend", n)
	}
	h.clock.Advance(time.Minute)
	if n := h.r.sweep(); n != 1 {
		t.Fatalf("swept %d flows, want 1", n)
	}
	if got := h.closeReasons(); !slices.Equal(got, []CloseReason{Expired}) {
		t.Errorf("OnClose reasons = %v", got)
	}
	// The client comes back: a new flow, routed again.
	if up2 := h.roundTrip(c, "REGISTER again"); up2 == up {
		t.Errorf("expired flow's socket %v reused", up)
	}
	if st := h.r.Stats(); st.FlowsOpened != 2 || st.FlowsExpired != 1 || len(h.routedSources()) != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestExpiredOnArrival: a flow past its idle time is replaced when its
// client speaks before the sweeper ran.
func TestExpiredOnArrival(t *testing.T) {
	h := start(t, "127.0.0.1", Config{IdleTimeout: time.Minute}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	up := h.roundTrip(c, "a")
	h.clock.Advance(time.Minute)
	if up2 := h.roundTrip(c, "b"); up2 == up {
		t.Error("expired flow used")
	}
	if st := h.r.Stats(); st.FlowsExpired != 1 || st.Flows != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestSweeperRuns(t *testing.T) {
	swept := make(chan int, 100)
	h := start(t, "127.0.0.1", Config{IdleTimeout: time.Hour}, func(r *Relay) {
		r.sweepEvery = 5 * time.Millisecond
		r.swept = func(n int) {
			select {
			case swept <- n:
			default:
			}
		}
	})
	c := listenUDP(t, "127.0.0.1:0")
	h.roundTrip(c, "REGISTER")
	h.clock.Advance(2 * time.Hour)
	deadline := time.After(waitFor)
	for total := 0; total == 0; {
		select {
		case n := <-swept:
			total += n
		case <-deadline:
			t.Fatal("sweeper did not remove the idle flow")
		}
	}
	if st := h.r.Stats(); st.Flows != 0 || st.FlowsExpired != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestBackendUnreachable(t *testing.T) {
	dead := listenUDP(t, "127.0.0.1:0")
	deadAP := localAP(dead)
	_ = dead.Close() // nobody listens there: the kernel answers ICMP port unreachable
	h := start(t, "127.0.0.1", Config{
		Route: func(netip.AddrPort, []byte) (netip.AddrPort, bool) { return deadAP, true },
	}, nil)
	c := listenUDP(t, "127.0.0.1:0")
	for range 3 {
		send(t, c, h.pub, "REGISTER")
	}
	// The refusal is reported once per flow, whether the upstream read or
	// the next write sees it.
	deadline := time.Now().Add(waitFor)
	for len(h.events.Events()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // the ICMP error arrives asynchronously
	}
	ev := h.events.Events()
	if len(ev) != 1 || ev[0].Kind != event.BackendUnreachable || ev[0].Reason != event.ReasonDial || ev[0].Source != localAP(c).Addr() {
		t.Fatalf("events = %+v, want one backend_unreachable", ev)
	}
}

func TestShutdown(t *testing.T) {
	h := start(t, "127.0.0.1", Config{}, nil)
	var ups []netip.AddrPort
	for range 3 {
		c := listenUDP(t, "127.0.0.1:0")
		ups = append(ups, h.roundTrip(c, "x"))
	}
	h.stop()
	for _, up := range ups {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(up))
		if err != nil {
			t.Errorf("upstream socket %v still open after Close: %v", up, err)
			continue
		}
		_ = c.Close()
	}
	if c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(h.pub)); err != nil {
		t.Errorf("public socket still open: %v", err)
	} else {
		_ = c.Close()
	}
	if got := h.closeReasons(); !slices.Equal(got, []CloseReason{Shutdown, Shutdown, Shutdown}) {
		t.Errorf("OnClose reasons = %v", got)
	}
	if err := h.r.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	pc := listenUDP(t, "127.0.0.1:0")
	if err := h.r.ServePacket(context.Background(), pc); err != ErrClosed {
		t.Errorf("ServePacket after Close = %v, want ErrClosed", err)
	}
}

func TestServeContextEnds(t *testing.T) {
	r, err := New(Config{Route: func(netip.AddrPort, []byte) (netip.AddrPort, bool) { return netip.AddrPort{}, false }}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc := listenUDP(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ServePacket(ctx, pc) }()
	// A second ServePacket is refused while the first runs... once it runs.
	c := listenUDP(t, "127.0.0.1:0")
	deadline := time.Now().Add(waitFor)
	for r.Stats().Received == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ServePacket read nothing")
		}
		send(t, c, localAP(pc), "probe") // the first one normally suffices
		time.Sleep(time.Millisecond)
	}
	if err := r.ServePacket(ctx, listenUDP(t, "127.0.0.1:0")); err != ErrServing {
		t.Errorf("second ServePacket = %v, want ErrServing", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServePacket = %v, want nil", err)
		}
	case <-time.After(waitFor):
		t.Fatal("ServePacket did not return after ctx ended")
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	route := func(netip.AddrPort, []byte) (netip.AddrPort, bool) { return netip.AddrPort{}, false }
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error; nil: valid
	}{
		{"minimal", Config{Route: route}, nil},
		{"no route", Config{}, []string{"Route: required"}},
		{"all bad", Config{MaxFlows: -1, IdleTimeout: -1, EvictIdle: -1, MaxDatagram: 65536},
			[]string{"Route", "MaxFlows", "IdleTimeout", "EvictIdle", "MaxDatagram"}},
		{"zone", Config{Route: route, UpstreamLocals: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, []string{"UpstreamLocals"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg, Options{})
			if tc.want == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				cfg := r.cfg.Load()
				if cfg.MaxFlows != DefaultMaxFlows || cfg.IdleTimeout != DefaultIdleTimeout ||
					cfg.EvictIdle != DefaultEvictIdle || cfg.MaxDatagram != DefaultMaxDatagram {
					t.Errorf("defaults not applied: %+v", cfg.Config)
				}
				if err := r.Reconfigure(Config{}); err == nil {
					t.Error("Reconfigure accepted an invalid config")
				}
				if r.cfg.Load() != cfg {
					t.Error("invalid Reconfigure replaced the config")
				}
				return
			}
			if err == nil {
				t.Fatal("New accepted an invalid config")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

// TestDualStack: on a dual-stack socket an IPv4 client arrives v4-mapped;
// hooks see it unmapped and answers reach it.
func TestDualStack(t *testing.T) {
	h := start(t, "::", Config{}, nil)
	pub4 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), h.pub.Port())
	c := listenUDP(t, "127.0.0.1:0")
	send(t, c, pub4, "REGISTER")
	p := recv(t, h.backend)
	send(t, h.backend, p.from, "200 OK")
	if q := recv(t, c); q.data != "200 OK" || q.from != pub4 {
		t.Fatalf("client got %q from %v", q.data, q.from)
	}
	if got := h.routedSources(); len(got) != 1 || got[0] != localAP(c) {
		t.Errorf("Route saw %v, want unmapped %v", got, localAP(c))
	}
	if n := h.r.CloseFrom(netip.MustParsePrefix("127.0.0.0/8")); n != 1 {
		t.Errorf("CloseFrom(127.0.0.0/8) = %d, want 1", n)
	}
}

// TestUpstreamLocals: new flows are spread over the configured local
// addresses.
func TestUpstreamLocals(t *testing.T) {
	locals := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	h := start(t, "127.0.0.1", Config{UpstreamLocals: locals}, nil)
	seen := map[netip.Addr]int{}
	for range 4 {
		c := listenUDP(t, "127.0.0.1:0")
		up := h.roundTrip(c, "REGISTER")
		seen[up.Addr()]++
	}
	if seen[locals[0]] != 2 || seen[locals[1]] != 2 {
		t.Errorf("upstream addresses used %v, want 2 flows on each of %v", seen, locals)
	}
}

// waitStats returns the relay's counters once ok accepts them, or after
// 5 s whatever they are: a datagram's effect can be seen by the test before
// the relay's goroutine has counted it.
func waitStats(r *Relay, ok func(Stats) bool) Stats {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := r.Stats()
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}
