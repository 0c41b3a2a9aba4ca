//go:build !race

package turn

import (
	"net"
	"net/netip"
	"testing"
)

// The per-packet paths allocate nothing of their own: the framer on
// ChannelData, a relay socket's write to a peer (filter, meter), and the
// fast path from a client to its channel's peer, the Binding answer.
func TestPacketPathAllocs(t *testing.T) {
	var fr framer
	frame := channelData(make([]byte, 172))
	if n := testing.AllocsPerRun(1000, func() { fr.feed(frame, func([]byte) { t.Fatal("no STUN here") }) }); n != 0 {
		t.Errorf("framer on ChannelData: %v allocs", n)
	}

	ts := startServer(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	rc := &relayPacketConn{PacketConn: pc, s: ts.srv, a: &alloc{}}
	defer rc.Close()
	payload := make([]byte, 172)
	to := sink.LocalAddr()
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := rc.WriteTo(payload, to); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("relay write to a peer: %v allocs", n)
	}

	lpc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lpc.Close()
	gpc := newGuardPacketConn(lpc, ts.srv)
	client := netip.MustParseAddrPort("127.0.0.1:40000")
	a := &alloc{fast: &fastPath{listener: gpc, relay: pc.(*net.UDPConn)}}
	a.fast.bind(client, netip.MustParseAddrPort(to.String()), 0x4001)
	gpc.clients.add(client, a)
	if n := testing.AllocsPerRun(1000, func() {
		if !gpc.relayToPeer(frame, client) {
			t.Fatal("not relayed")
		}
	}); n != 0 {
		t.Errorf("fast path to a peer: %v allocs", n)
	}

	req := bindingRequest(t).Raw
	var buf [bindingAnswerMaxLen]byte
	if n := testing.AllocsPerRun(1000, func() {
		if !isBindingRequest(req) {
			t.Fatal("not a Binding request")
		}
		bindingAnswer(buf[:], req, client)
	}); n != 0 {
		t.Errorf("Binding answer: %v allocs", n)
	}
}
