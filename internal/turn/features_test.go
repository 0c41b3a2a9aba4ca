package turn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

var loopbackPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// tcpClient returns a pion TURN client speaking over one TCP connection.
func tcpClient(t *testing.T, server net.Addr, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.Dial("tcp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           pionturn.NewSTUNConn(conn),
		Username:       user,
		Password:       pass,
		Realm:          realm,
	})
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// tcpEchoPeer echoes every TCP connection until closed.
func tcpEchoPeer(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr()
}

// roundTrip sends msg through relay to peer and expects it back.
func roundTrip(t *testing.T, relay net.PacketConn, peer net.Addr, msg []byte) {
	t.Helper()
	if _, err := relay.WriteTo(msg, peer); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if err := relay.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, _, err := relay.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("ReadFrom: %q, %v; want %q", buf[:n], err, msg)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestTCPControlConnection(t *testing.T) {
	ts := startServer(t, loopbackPeers, nil)
	relay := allocate(t, tcpClient(t, ts.tcp, "alice", password))
	roundTrip(t, relay, echoPeer(t), []byte("UDP relay, TCP control"))
	as := ts.srv.Allocations()
	if len(as) != 1 || as[0].Listener != "tcp" || as[0].Protocol != "udp" || as[0].User != "alice" ||
		as[0].PacketsToPeer != 1 || as[0].BytesFromPeer != uint64(len("UDP relay, TCP control")) {
		t.Errorf("allocations %+v", as)
	}
}

func TestTCPAllocation(t *testing.T) {
	ts := startServer(t, loopbackPeers, nil)
	c := tcpClient(t, ts.tcp, "alice", password)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()
	peer := tcpEchoPeer(t).(*net.TCPAddr)
	conn, err := alloc.DialTCP("tcp", nil, peer)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer conn.Close()
	msg := []byte("RFC 6062 through pbxgate")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("echo %q, %v", got, err)
	}
	as := ts.srv.Allocations()
	if len(as) != 1 || as[0].Protocol != "tcp" || as[0].BytesToPeer < uint64(len(msg)) {
		t.Errorf("allocations %+v", as)
	}
}

func TestTCPConnectDenied(t *testing.T) {
	ts := startServer(t, nil, nil)
	c := tcpClient(t, ts.tcp, "alice", password)
	alloc, err := c.AllocateTCP()
	if err != nil {
		t.Fatalf("AllocateTCP: %v", err)
	}
	defer alloc.Close()
	peer := tcpEchoPeer(t).(*net.TCPAddr)
	if conn, err := alloc.DialTCP("tcp", nil, peer); err == nil {
		conn.Close()
		t.Fatal("Connect to loopback succeeded without allow_peers")
	}
	e := ts.events.waitFor(t, event.RejectedByGateway, event.ReasonPeerDenied)
	if !strings.Contains(e.Detail, "loopback") || e.Listener != "tcp" {
		t.Errorf("event %+v", e)
	}
}

func TestIPv6Relay(t *testing.T) {
	ts := startServerWith(t, serverOpts{allowPeers: loopbackPeers, public: []netip.Addr{netip.IPv6Loopback()}})
	conn, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: ts.udp.String(), TURNServerAddr: ts.udp.String(),
		Conn: conn, Username: "alice", Password: password, Realm: realm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay := allocate(t, c)
	if ra := relay.LocalAddr().(*net.UDPAddr); !ra.IP.Equal(net.IPv6loopback) {
		t.Errorf("relay %v, want on ::1", ra)
	}
	pc, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	roundTrip(t, relay, pc.LocalAddr(), []byte("over IPv6"))
}

func TestQuotas(t *testing.T) {
	for _, tc := range []struct {
		name   string
		q      Quotas
		second string // user of the second allocation
		full   string // quota expected full, "" for none
	}{
		{"per user", Quotas{PerUser: 1}, "alice", "user"},
		{"per user, other user", Quotas{PerUser: 1}, "bob", ""},
		{"per source", Quotas{PerSource: 1}, "bob", "source"},
		{"total", Quotas{Total: 1}, "bob", "total"},
		{"no limits", Quotas{}, "alice", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServerWith(t, serverOpts{quotas: tc.q})
			allocate(t, newClient(t, ts.udp, "alice", password))
			user, pass := "alice", password
			if tc.second == "bob" {
				var err error
				if user, pass, err = ts.secrets.Issue("bob", time.Now(), time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			relay, err := newClient(t, ts.udp, user, pass).Allocate()
			if tc.full == "" {
				if err != nil {
					t.Fatalf("second allocation: %v", err)
				}
				_ = relay.Close()
				return
			}
			if err == nil {
				_ = relay.Close()
				t.Fatal("second allocation succeeded")
			}
			if !strings.Contains(err.Error(), "486") {
				t.Errorf("error %v, want 486 Allocation Quota Reached", err)
			}
			if v := counterValue(t, ts.reg, "pbxgate_turn_quota_refused_total", "quota", tc.full); v != 1 {
				t.Errorf("quota %s refusals = %v", tc.full, v)
			}
			// The slot comes back when the first allocation ends.
			for _, a := range ts.srv.Allocations() {
				ts.srv.End(a.ID)
			}
			eventually(t, "quota released", func() bool {
				r, err := newClient(t, ts.udp, user, pass).Allocate()
				if err == nil {
					_ = r.Close()
				}
				return err == nil
			})
		})
	}
}

func TestEndAndCloseFrom(t *testing.T) {
	ts := startServer(t, loopbackPeers, nil)
	c1 := newClient(t, ts.udp, "alice", password)
	allocate(t, c1)
	allocate(t, newClient(t, ts.udp, "alice", password))
	as := ts.srv.Allocations()
	if len(as) != 2 || as[0].ID >= as[1].ID || as[0].Client == "" {
		t.Fatalf("allocations %+v", as)
	}
	if _, ok := ts.srv.End(as[0].ID + 100); ok {
		t.Error("End of an unknown id succeeded")
	}
	got, ok := ts.srv.End(as[0].ID)
	if !ok || got.ID != as[0].ID {
		t.Fatalf("End = %+v, %v", got, ok)
	}
	if left := ts.srv.Allocations(); len(left) != 1 || left[0].ID != as[1].ID {
		t.Errorf("after End: %+v", left)
	}
	if n := ts.srv.CloseFrom(netip.MustParsePrefix("10.0.0.0/8")); n != 0 {
		t.Errorf("CloseFrom another network ended %d", n)
	}
	if n := ts.srv.CloseFrom(netip.MustParsePrefix("127.0.0.1/32")); n != 1 {
		t.Errorf("CloseFrom ended %d, want 1", n)
	}
	if left := ts.srv.Allocations(); len(left) != 0 {
		t.Errorf("after CloseFrom: %+v", left)
	}
	// The relay port is closed: the peer's datagrams reach nobody.
	relayAddr := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(as[1].Relay))
	probe, err := net.DialUDP("udp4", nil, relayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	_, _ = probe.Write([]byte("x"))
	_ = probe.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := probe.Read(make([]byte, 8)); err == nil || !isRefused(err) {
		t.Errorf("relay port still open after CloseFrom: %v", err)
	}
}

// isRefused reports an ICMP port unreachable seen on a connected UDP socket.
func isRefused(err error) bool {
	return strings.Contains(err.Error(), "connection refused")
}

func TestMaxLifetime(t *testing.T) {
	ts := startServerWith(t, serverOpts{quotas: Quotas{MaxLifetime: 200 * time.Millisecond}})
	allocate(t, newClient(t, ts.udp, "alice", password))
	if len(ts.srv.Allocations()) != 1 {
		t.Fatal("no allocation")
	}
	eventually(t, "the lifetime cap", func() bool { return len(ts.srv.Allocations()) == 0 })
}

func TestBandwidthCap(t *testing.T) {
	ts := startServerWith(t, serverOpts{allowPeers: loopbackPeers, quotas: Quotas{MaxKbps: 100}})
	relay := allocate(t, newClient(t, ts.udp, "alice", password))
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	// 100 kbit/s is 12.5 kB/s with a 64 KiB burst: 200 datagrams of 1000
	// bytes at once cannot all pass.
	payload := make([]byte, 1000)
	for range 200 {
		if _, err := relay.WriteTo(payload, sink.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "drops", func() bool { return counterValue(t, ts.reg, "pbxgate_turn_bandwidth_dropped_total", "", "") > 0 })
	as := ts.srv.Allocations()
	if len(as) != 1 || as[0].BytesToPeer > 80_000 || as[0].BytesToPeer < 60_000 {
		t.Errorf("bytes relayed under a 100 kbit/s cap: %+v", as)
	}
}

func TestRESTRotation(t *testing.T) {
	oldSecret := []byte("the-old-secret-0123456789")
	ts := startServerWith(t, serverOpts{secrets: [][]byte{restSecret, oldSecret}})
	old, err := turnauth.NewSecrets([][]byte{oldSecret})
	if err != nil {
		t.Fatal(err)
	}
	user, pass, err := old.Issue("dave", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	allocate(t, newClient(t, ts.udp, user, pass))
	allocate(t, tcpClient(t, ts.tcp, user, pass))
	if es := ts.events.of(event.RejectedByService, event.ReasonInvalidCreds); len(es) != 0 {
		t.Errorf("credential of the older secret refused: %+v", es)
	}
	for _, a := range ts.srv.Allocations() {
		if a.User != "dave" {
			t.Errorf("allocation user %q, want the REST user part", a.User)
		}
	}
	// A credential of neither secret is still refused.
	forged, err := turnauth.NewSecrets([][]byte{[]byte("not-a-configured-secret")})
	if err != nil {
		t.Fatal(err)
	}
	fu, fp, err := forged.Issue("dave", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if relay, err := newClient(t, ts.udp, fu, fp).Allocate(); err == nil {
		_ = relay.Close()
		t.Fatal("forged credential allocated")
	}
	ts.events.waitFor(t, event.RejectedByService, event.ReasonInvalidCreds)
}

func TestPermitRanges(t *testing.T) {
	ts := startServer(t, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/24")}, nil)
	permit := ts.srv.permit("l")
	client := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 1}
	for _, tc := range []struct {
		peer string
		ok   bool
	}{
		{"127.0.0.1", false}, {"::ffff:127.0.0.1", false}, {"0.1.2.3", false}, {"10.0.0.1", false},
		{"172.16.5.5", false}, {"192.168.1.1", false}, {"100.64.0.1", false}, {"169.254.169.254", false},
		{"224.0.0.1", false}, {"240.0.0.1", false}, {"255.255.255.255", false},
		{"::1", false}, {"::", false}, {"fc00::1", false}, {"fd12::1", false}, {"fe80::1", false},
		{"64:ff9b::7f00:1", false}, {"2002:7f00:1::", false}, {"ff02::1", false}, {"::ffff:10.0.0.1", false},
		{"10.20.0.7", true}, {"::ffff:10.20.0.7", true}, {"8.8.8.8", true}, {"2606:4700::1111", true},
	} {
		if got := permit(client, net.ParseIP(tc.peer)); got != tc.ok {
			t.Errorf("permit(%s) = %v, want %v", tc.peer, got, tc.ok)
		}
	}
	if got := permit(client, nil); got {
		t.Error("permit(nil) = true")
	}
	if v := counterValue(t, ts.reg, "pbxgate_turn_peer_denied_total", "range", "loopback"); v != 3 {
		t.Errorf("loopback denials = %v, want 3 (127.0.0.1, ::ffff:127.0.0.1, ::1)", v)
	}
}

func TestRelayWriteFilter(t *testing.T) {
	ts := startServer(t, nil, nil)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &relayPacketConn{PacketConn: pc, s: ts.srv, a: &alloc{}}
	defer rc.Close()
	if _, err := rc.WriteTo([]byte("x"), &net.UDPAddr{IP: net.IPv4(169, 254, 169, 254), Port: 80}); !errors.Is(err, ErrPeerDenied) {
		t.Errorf("write to the metadata address: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	var logs syncBuffer
	ts := startServerWith(t, serverOpts{idle: 300 * time.Millisecond, access: slog.New(slog.NewTextHandler(&logs, nil))})
	conn, err := net.Dial("tcp4", ts.tcp.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(bindingRequest(t).Raw); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(conn, make([]byte, 20)); err != nil {
		t.Fatalf("no binding answer over TCP: %v", err)
	}
	start := time.Now()
	_, err = io.Copy(io.Discard, conn) // until the server closes
	if err != nil || time.Since(start) > 3*time.Second {
		t.Errorf("idle connection: %v after %s", err, time.Since(start))
	}
	eventually(t, "the access line", func() bool {
		return strings.Contains(logs.String(), "msg=connection listener=tcp proto=turn src=127.0.0.1 duration=")
	})
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, loopbackPeers, nil)
	relay := allocate(t, newClient(t, ts.udp, "alice", password))
	roundTrip(t, relay, echoPeer(t), []byte("12345"))
	if v := counterValue(t, ts.reg, "pbxgate_turn_allocations", "protocol", "udp"); v != 1 {
		t.Errorf("allocations gauge %v", v)
	}
	if v := counterValue(t, ts.reg, "pbxgate_turn_relayed_bytes_total", "direction", "to_peer"); v != 5 {
		t.Errorf("bytes to peer %v", v)
	}
	if v := counterValue(t, ts.reg, "pbxgate_turn_relayed_packets_total", "direction", "from_peer"); v != 1 {
		t.Errorf("packets from peer %v", v)
	}
	if _, err := newClient(t, ts.udp, "alice", "wrong").Allocate(); err == nil {
		t.Fatal("wrong password allocated")
	}
	eventually(t, "auth failure metric", func() bool {
		return counterValue(t, ts.reg, "pbxgate_turn_auth_failures_total", "reason", "wrong_password") == 1
	})
	// Bytes of ended allocations stay counted.
	for _, a := range ts.srv.Allocations() {
		ts.srv.End(a.ID)
	}
	if v := counterValue(t, ts.reg, "pbxgate_turn_relayed_bytes_total", "direction", "to_peer"); v != 5 {
		t.Errorf("bytes to peer after the allocation ended: %v", v)
	}
}

// counterValue returns the value of metric name with label=value (label ""
// for an unlabelled metric), 0 if absent.
func counterValue(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && !hasLabel(m, label, value) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// TestRefusalCodes: a wrong password is answered 401 with REALM and NONCE
// (RFC 8489 9.2.4; pion says 400), over UDP and TCP, and a ChannelBind to a
// denied peer 403 (pion says 401).
func TestRefusalCodes(t *testing.T) {
	ts := startServer(t, nil, nil)
	for _, network := range []string{"udp4", "tcp4"} {
		t.Run(network, func(t *testing.T) {
			server := ts.udp
			if network == "tcp4" {
				server = ts.tcp
			}
			conn, err := net.Dial(network, server.String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			exchange := func(setters ...stun.Setter) *stun.Message {
				t.Helper()
				req := stun.MustBuild(append([]stun.Setter{stun.TransactionID,
					stun.NewType(stun.MethodAllocate, stun.ClassRequest),
					requestedUDP{}}, setters...)...)
				if _, err := conn.Write(req.Raw); err != nil {
					t.Fatal(err)
				}
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1500)
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				m := &stun.Message{Raw: buf[:n]}
				if err := m.Decode(); err != nil || m.TransactionID != req.TransactionID {
					t.Fatalf("answer %v (%v)", m, err)
				}
				return m
			}
			var ec stun.ErrorCodeAttribute
			var nonce stun.Nonce
			first := exchange()
			if err := ec.GetFrom(first); err != nil || ec.Code != stun.CodeUnauthorized || nonce.GetFrom(first) != nil {
				t.Fatalf("first answer %v", first)
			}
			wrong := exchange(stun.NewUsername("alice"), stun.NewRealm(realm), nonce,
				stun.NewLongTermIntegrity("alice", realm, "wrong"))
			var r stun.Realm
			var n2 stun.Nonce
			if err := ec.GetFrom(wrong); err != nil || ec.Code != stun.CodeUnauthorized ||
				r.GetFrom(wrong) != nil || r.String() != realm || n2.GetFrom(wrong) != nil || n2.String() != nonce.String() {
				t.Errorf("wrong password answered %v (code %d)", wrong, ec.Code)
			}
			unknown := exchange(stun.NewUsername("mallory"), stun.NewRealm(realm), nonce,
				stun.NewLongTermIntegrity("mallory", realm, password))
			if err := ec.GetFrom(unknown); err != nil || ec.Code != stun.CodeUnauthorized {
				t.Errorf("unknown user answered %v", unknown)
			}
		})
	}
}

func TestRecodeChannelBind(t *testing.T) {
	ts := startServer(t, nil, nil)
	resp := stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodChannelBind, stun.ClassErrorResponse),
		&stun.ErrorCodeAttribute{Code: stun.CodeUnauthorized})
	addr := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5}
	if got := ts.srv.fixAnswer(resp.Raw, addr, &requests{}); !bytes.Equal(got, resp.Raw) {
		t.Error("an unmarked answer was changed")
	}
	ts.srv.fixes.mark(addr, int(stun.CodeForbidden))
	got := &stun.Message{Raw: ts.srv.fixAnswer(resp.Raw, addr, &requests{})}
	var ec stun.ErrorCodeAttribute
	if err := got.Decode(); err != nil || ec.GetFrom(got) != nil || ec.Code != stun.CodeForbidden || got.TransactionID != resp.TransactionID {
		t.Errorf("ChannelBind refusal %v, want 403", got)
	}
	if _, ok := ts.srv.fixes.take(addr); ok {
		t.Error("the mark outlived its answer")
	}
}

// requestedUDP is the REQUESTED-TRANSPORT attribute asking for UDP (17).
type requestedUDP struct{}

func (requestedUDP) AddTo(m *stun.Message) error {
	m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	return nil
}

// TestFastPath: once the client's channel is bound, ChannelData is relayed
// by the sockets themselves both ways, counted, and still filtered.
func TestFastPath(t *testing.T) {
	ts := startServer(t, loopbackPeers, nil)
	relay := allocate(t, newClient(t, ts.udp, "alice", password))
	peer := echoPeer(t)
	peerAP := netip.MustParseAddrPort(peer.String())
	var a *alloc
	eventually(t, "the channel bound", func() bool {
		roundTrip(t, relay, peer, []byte("until bound"))
		as := ts.srv.Allocations()
		if len(as) != 1 {
			return false
		}
		a = ts.srv.reg.byRelayAddr("udp", netip.MustParseAddrPort(as[0].Relay))
		if a == nil || a.fast == nil {
			t.Fatal("no fast path on a UDP listener's allocation")
		}
		tbl := a.fast.chans.Load()
		return tbl != nil && tbl.byPeer[peerAP] != 0
	})
	before := a.toPeer.packets.Load()
	for i := range 50 {
		roundTrip(t, relay, peer, []byte(fmt.Sprintf("fast %d", i)))
	}
	if got := a.toPeer.packets.Load() - before; got != 50 {
		t.Errorf("%d packets counted to the peer, want 50", got)
	}
	if got := ts.srv.reg.byRelayAddr("udp", a.relay); got != a {
		t.Fatal("allocation record replaced")
	}
	// A reload closing loopback drops the bound channel's packets.
	if err := ts.srv.Reconfigure(Settings{Users: map[string][]byte{"alice": turnauth.LongTermKey("alice", realm, password)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.WriteTo([]byte("now denied"), peer); err != nil {
		t.Fatal(err)
	}
	_ = relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := relay.ReadFrom(make([]byte, 100)); err == nil {
		t.Errorf("a denied peer was reached: %d bytes back", n)
	}
}

// TestBindingAnswer: the Binding answer decodes as STUN, carries the
// client's address and a valid FINGERPRINT, for IPv4 and IPv6 clients, and
// a malformed request is left to pion.
func TestBindingAnswer(t *testing.T) {
	for _, client := range []string{"192.0.2.7:40000", "[2001:db8::7]:5", "[::ffff:198.51.100.1]:3478"} {
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("test"), stun.Fingerprint)
		if !isBindingRequest(req.Raw) {
			t.Fatal("a Binding request not recognised")
		}
		ap := netip.MustParseAddrPort(client)
		got := &stun.Message{Raw: append([]byte(nil), bindingAnswer(make([]byte, bindingAnswerMaxLen), req.Raw, ap)...)}
		if err := got.Decode(); err != nil {
			t.Fatal(err)
		}
		var xa stun.XORMappedAddress
		if got.Type != stun.BindingSuccess || got.TransactionID != req.TransactionID || xa.GetFrom(got) != nil ||
			xa.Port != int(ap.Port()) || !xa.IP.Equal(net.IP(ap.Addr().Unmap().AsSlice())) {
			t.Errorf("%s: answer %v, mapped %v", client, got, xa)
		}
		if err := stun.Fingerprint.Check(got); err != nil {
			t.Errorf("%s: fingerprint: %v", client, err)
		}
	}
	bad := stun.MustBuild(stun.TransactionID, stun.BindingRequest, stun.NewSoftware("x")).Raw
	if isBindingRequest(bad[:len(bad)-4]) || isBindingRequest(append(bad, 0, 0, 0, 0)) {
		t.Error("a truncated or padded request taken for a Binding request")
	}
}
