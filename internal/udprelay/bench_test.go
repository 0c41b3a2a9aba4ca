package udprelay

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// echo answers every datagram on c until c is closed.
func echo(c *net.UDPConn) {
	buf := make([]byte, bufSize)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		_, _ = c.WriteToUDPAddrPort(buf[:n], from)
	}
}

// pingPong keeps window datagrams in flight from c to to and back until
// b.N have returned, and reports relayed datagrams per second (each round
// trip is two).
func pingPong(b *testing.B, c *net.UDPConn, to netip.AddrPort, size, window int) {
	msg := make([]byte, size)
	buf := make([]byte, bufSize)
	for range window {
		if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		_ = c.SetReadDeadline(time.Now().Add(waitFor))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatalf("round trip %d: %v (datagram lost?)", i, err)
		}
		if i+window < b.N {
			if _, err := c.WriteToUDPAddrPort(msg, to); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(2*b.N)/time.Since(start).Seconds(), "datagrams/s")
}

// BenchmarkRelay: datagrams through an established flow on loopback,
// client ⇄ relay ⇄ echoing backend, 16 in flight, SIP-sized.
func BenchmarkRelay(b *testing.B) {
	h := start(b, "127.0.0.1", Config{}, nil)
	go echo(h.backend)
	c := listenUDP(b, "127.0.0.1:0")
	pingPong(b, c, h.pub, 600, 16)
	b.StopTimer()
	h.stop()
	_ = h.backend.Close()
}

// BenchmarkDirect is the baseline: the same traffic without the relay.
func BenchmarkDirect(b *testing.B) {
	be := listenUDP(b, "127.0.0.1:0")
	go echo(be)
	c := listenUDP(b, "127.0.0.1:0")
	pingPong(b, c, localAP(be), 600, 16)
	b.StopTimer()
	_ = be.Close()
}

// BenchmarkOpenFlow: cost of a new flow (route, socket, epoll) with the
// table full of unestablished flows, i.e. a spoofed flood: each datagram
// evicts one flow and opens one. Reports bytes of Go memory per open flow.
func BenchmarkOpenFlow(b *testing.B) {
	h := start(b, "127.0.0.1", Config{MaxFlows: 1000}, nil)
	msg := []byte("REGISTER")
	src := netip.MustParseAddr("127.0.0.9")
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		h.r.fromClient(msg, netip.AddrPortFrom(src, uint16(1+i%60000)), nil)
	}
	b.StopTimer()
	if st := h.r.Stats(); st.DroppedError != 0 {
		b.Fatalf("Stats = %+v", st)
	}
}
