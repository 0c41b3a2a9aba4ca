package udprelay

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// pace waits until the relay has read sent datagrams, so a flood does not
// overflow the public socket's receive buffer.
func pace(t testing.TB, r *Relay, sent uint64) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for r.Stats().Received < sent {
		if time.Now().After(deadline) {
			t.Fatalf("relay read %d of %d datagrams", r.Stats().Received, sent)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// flood sends one datagram from each of n distinct sources on
// 127.0.1.0/24, 250 per address, each from a socket of its own. The
// sockets of one address stay open until its 250 have been sent, so their
// ports are distinct.
func flood(t testing.TB, r *Relay, pub netip.AddrPort, n int, already uint64) {
	t.Helper()
	msg := []byte("REGISTER sip:flood")
	var open []*net.UDPConn
	closeAll := func() {
		for _, c := range open {
			_ = c.Close()
		}
		open = open[:0]
	}
	defer closeAll()
	for i := range n {
		if i%250 == 0 {
			closeAll()
		}
		ip := netip.AddrFrom4([4]byte{127, 0, 1, byte(1 + i/250)})
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			t.Fatalf("flood source %d: %v", i, err)
		}
		open = append(open, c)
		if _, err = c.WriteToUDPAddrPort(msg, pub); err != nil {
			t.Fatalf("flood send %d: %v", i, err)
		}
		if i%100 == 99 {
			pace(t, r, already+uint64(i+1))
		}
	}
	pace(t, r, already+uint64(n))
}

// floodRoute reconfigures h to send flood sources to a socket nobody reads
// and everyone else to the harness backend.
func floodRoute(h *harness, cfg Config) {
	sink := listenUDP(h.t, "127.0.0.1:0")
	sinkAP, be := localAP(sink), localAP(h.backend)
	flooders := netip.MustParsePrefix("127.0.1.0/24")
	cfg.Route = func(src netip.AddrPort, _ []byte) (netip.AddrPort, bool) {
		if flooders.Contains(src.Addr()) {
			return sinkAP, true
		}
		return be, true
	}
	if err := h.r.Reconfigure(cfg); err != nil {
		h.t.Fatal(err)
	}
}

// TestFloodKeepsEstablished: 10,000 new sources against a table of 64
// churn among themselves; the established flow keeps its socket and works.
func TestFloodKeepsEstablished(t *testing.T) {
	h := start(t, "127.0.0.1", Config{}, nil)
	floodRoute(h, Config{MaxFlows: 64})
	a := listenUDP(t, "127.0.0.1:0")
	up := h.roundTrip(a, "REGISTER")
	h.roundTrip(a, "REGISTER auth")
	if f := h.flowOf(a); f == nil || !f.Established() {
		t.Fatal("flow of a not established")
	}

	const n = 10000
	flood(t, h.r, h.pub, n, h.r.Stats().Received)

	if up2 := h.roundTrip(a, "OPTIONS"); up2 != up {
		t.Errorf("established flow moved from %v to %v", up, up2)
	}
	st := h.r.Stats()
	if st.Flows > 64 || st.FlowsOpened != n+1 || st.FlowsEvicted != n+1-uint64(st.Flows) || st.FlowsRefused != 0 {
		t.Errorf("Stats = %+v, want %d opened, all but the table evicted, none refused", st, n+1)
	}
	if st.Unconfirmed != st.Flows-1 {
		t.Errorf("Unconfirmed = %d, want %d", st.Unconfirmed, st.Flows-1)
	}
}

// TestFullOfEstablished: when every flow is established and recently
// active, a new source is refused; once one has been idle for EvictIdle it
// makes room.
func TestFullOfEstablished(t *testing.T) {
	h := start(t, "127.0.0.1", Config{MaxFlows: 4, EvictIdle: 5 * time.Minute}, nil)
	var clients []*net.UDPConn
	for range 4 {
		c := listenUDP(t, "127.0.0.1:0")
		h.roundTrip(c, "REGISTER")
		h.roundTrip(c, "REGISTER auth")
		clients = append(clients, c)
	}
	late := listenUDP(t, "127.0.0.2:0")
	send(t, late, h.pub, "REGISTER late")
	h.roundTrip(clients[0], "ping") // in order: the late datagram was handled
	st := h.r.Stats()
	if st.FlowsRefused != 1 || st.Flows != 4 {
		t.Fatalf("Stats = %+v, want one refusal", st)
	}
	ev := h.events.Events()
	if len(ev) != 1 || ev[0].Reason != event.ReasonConnLimit || ev[0].Source != localAP(late).Addr() {
		t.Fatalf("events = %+v, want one connection_limit for the late source", ev)
	}

	h.clock.Advance(6 * time.Minute)
	h.roundTrip(clients[0], "ping") // clients[0] is fresh; the others idle 6m
	h.roundTrip(late, "REGISTER late again")
	st = h.r.Stats()
	if st.FlowsEvicted != 1 || st.Flows != 4 {
		t.Fatalf("Stats = %+v, want one eviction", st)
	}
	if h.flowOf(clients[0]) == nil {
		t.Error("the active flow was evicted")
	}
}
