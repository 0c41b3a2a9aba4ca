package turn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	realm    = "pbxgate.test"
	password = "correct horse"
)

var restSecret = []byte("0123456789abcdef0123")

// recorder is an event.Sink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []event.Event
}

func (r *recorder) Emit(e event.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Event(nil), r.events...)
}

func (r *recorder) of(kind event.Kind, reason string) []event.Event {
	var out []event.Event
	for _, e := range r.all() {
		if e.Kind == kind && e.Reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// waitFor polls for an event of kind and reason for up to 5 s (pion may emit
// just after it answered).
func (r *recorder) waitFor(t *testing.T, kind event.Kind, reason string) event.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if es := r.of(kind, reason); len(es) > 0 {
			return es[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s/%s event; got %+v", kind, reason, r.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type testServer struct {
	srv     *Server
	udp     net.Addr
	tcp     net.Addr
	events  *recorder
	secrets *turnauth.Secrets
	reg     *prometheus.Registry
}

type serverOpts struct {
	allowPeers []netip.Prefix
	allowed    func(netip.Addr) bool
	quotas     Quotas
	secrets    [][]byte // default: restSecret
	public     []netip.Addr
	idle       time.Duration
	access     *slog.Logger
}

func startServer(t *testing.T, allowPeers []netip.Prefix, allowed func(netip.Addr) bool) *testServer {
	t.Helper()
	return startServerWith(t, serverOpts{allowPeers: allowPeers, allowed: allowed})
}

func startServerWith(t *testing.T, o serverOpts) *testServer {
	t.Helper()
	if o.secrets == nil {
		o.secrets = [][]byte{restSecret}
	}
	secrets, err := turnauth.NewSecrets(o.secrets)
	if err != nil {
		t.Fatal(err)
	}
	if o.public == nil {
		o.public = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	srv, err := New(Config{
		Realm:       realm,
		PublicAddrs: o.public,
		RelayAddrs:  o.public,
		Allowed:     o.allowed,
		Settings: Settings{
			Users:       map[string][]byte{"alice": turnauth.LongTermKey("alice", realm, password)},
			Secrets:     secrets,
			AllowPeers:  o.allowPeers,
			Quotas:      o.quotas,
			IdleTimeout: o.idle,
			Access:      o.access,
		},
	}, Options{Events: rec, Log: slog.New(slog.DiscardHandler), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	network := "udp4"
	if o.public[0].Is6() {
		network = "udp6"
	}
	pc, err := net.ListenPacket(network, netip.AddrPortFrom(o.public[0], 0).String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.ServePacket("udp", pc); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp"+network[3:], netip.AddrPortFrom(o.public[0], 0).String())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go acceptLoop(ln, srv.Stream("tcp"), done)
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &testServer{srv: srv, udp: pc.LocalAddr(), tcp: ln.Addr(), events: rec, secrets: secrets, reg: reg}
}

// acceptLoop plays the gateway's TCP listener: it hands every connection
// to h.
func acceptLoop(ln net.Listener, h StreamHandler, done chan<- struct{}) {
	defer close(done)
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		if err := h.ServeConn(context.Background(), c, ap.Addr()); err != nil {
			_ = c.Close()
		}
	}
}

// newClient returns a listening pion TURN client on loopback.
func newClient(t *testing.T, server net.Addr, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server.String(),
		TURNServerAddr: server.String(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		Realm:          realm,
		RTO:            50 * time.Millisecond,
	})
	if err != nil {
		_ = conn.Close()
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		c.Close()
		_ = conn.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

func allocate(t *testing.T, c *pionturn.Client) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

func TestAllocate(t *testing.T) {
	ts := startServer(t, nil, nil)
	restUser, restPass, err := ts.secrets.Issue("bob", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, user, pass string }{
		{"static user", "alice", password},
		{"REST credential", restUser, restPass},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(ts.events.of(event.Success, event.ReasonOK))
			relay := allocate(t, newClient(t, ts.udp, tc.user, tc.pass))
			ra, ok := relay.LocalAddr().(*net.UDPAddr)
			if !ok || !ra.IP.Equal(net.IPv4(127, 0, 0, 1)) || ra.Port < int(DefaultPortMin) {
				t.Errorf("relay address %v, want 127.0.0.1 in the default port range", relay.LocalAddr())
			}
			ts.events.waitFor(t, event.Success, event.ReasonOK)
			var got []event.Event
			for _, e := range ts.events.of(event.Success, event.ReasonOK)[before:] {
				if e.User == userOf(tc.user) {
					got = append(got, e)
				}
			}
			if len(got) != 1 || got[0].Source != netip.MustParseAddr("127.0.0.1") || got[0].Proto != Proto {
				t.Errorf("success events for %s: %+v", tc.user, got)
			}
		})
	}
	// The clients' first requests carried no credentials and got a 401
	// challenge: that is no event.
	for _, e := range ts.events.all() {
		if e.Kind.Suspicious() {
			t.Errorf("unexpected suspicious event %+v", e)
		}
	}
}

func TestAuthRefused(t *testing.T) {
	expUser, expPass, err := func() (string, string, error) {
		s, err := turnauth.NewSecrets([][]byte{restSecret})
		if err != nil {
			return "", "", err
		}
		return s.Issue("carol", time.Now().Add(-2*time.Hour), time.Hour)
	}()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, pass, detail string
	}{
		{"wrong password", "alice", "wrong", "MESSAGE-INTEGRITY"},
		{"unknown user", "mallory", password, "unknown user"},
		{"expired REST credential", expUser, expPass, "expired"},
		{"malformed REST username", "x:bob", "whatever", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, nil, nil)
			c := newClient(t, ts.udp, tc.user, tc.pass)
			if relay, err := c.Allocate(); err == nil {
				_ = relay.Close()
				t.Fatal("Allocate succeeded")
			}
			e := ts.events.waitFor(t, event.RejectedByService, event.ReasonInvalidCreds)
			if e.User != userOf(tc.user) || e.Proto != Proto || e.Source != netip.MustParseAddr("127.0.0.1") ||
				!strings.Contains(e.Detail, tc.detail) {
				t.Errorf("event %+v, want user %q, detail containing %q", e, tc.user, tc.detail)
			}
			if n := len(ts.events.of(event.Success, event.ReasonOK)); n != 0 {
				t.Errorf("%d success events", n)
			}
			if n := len(ts.srv.Allocations()); n != 0 {
				t.Errorf("%d allocations", n)
			}
		})
	}
}

// echoPeer answers every datagram with the same bytes until closed.
func echoPeer(t *testing.T) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if _, err := pc.WriteTo(buf[:n], from); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	return pc.LocalAddr()
}

func TestPeerFilter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow []netip.Prefix
		ok    bool
	}{
		{"loopback denied by default", nil, false},
		{"loopback opened by allow_peers", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.allow, nil)
			c := newClient(t, ts.udp, "alice", password)
			allocate(t, c)
			peer := echoPeer(t)
			err := c.CreatePermission(peer)
			denied := ts.events.of(event.RejectedByGateway, event.ReasonPeerDenied)
			if tc.ok {
				if err != nil || len(denied) != 0 {
					t.Fatalf("CreatePermission: %v, events %+v", err, denied)
				}
				return
			}
			if err == nil {
				t.Fatal("CreatePermission to loopback succeeded")
			}
			e := ts.events.waitFor(t, event.RejectedByGateway, event.ReasonPeerDenied)
			if e.Source != netip.MustParseAddr("127.0.0.1") || e.Proto != Proto ||
				!strings.Contains(e.Detail, "127.0.0.1") || !strings.Contains(e.Detail, "loopback") {
				t.Errorf("event %+v", e)
			}
		})
	}
}

func TestRelayEcho(t *testing.T) {
	ts := startServer(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, nil)
	relay := allocate(t, newClient(t, ts.udp, "alice", password))
	peer := echoPeer(t)
	msg := []byte("hello through the relay")
	if _, err := relay.WriteTo(msg, peer); err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if err := relay.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, from, err := relay.ReadFrom(buf)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	if !bytes.Equal(buf[:n], msg) || from.String() != peer.String() {
		t.Errorf("got %q from %v, want %q from %v", buf[:n], from, msg, peer)
	}
}

func bindingRequest(t *testing.T) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// exchangeUDP sends a Binding request and reports whether an answer came
// within wait.
func exchangeUDP(t *testing.T, server net.Addr, wait time.Duration) bool {
	t.Helper()
	conn, err := net.Dial("udp4", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := bindingRequest(t)
	if _, err := conn.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		t.Fatal(err)
	}
	resp := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := resp.Decode(); err != nil || resp.TransactionID != req.TransactionID {
		t.Fatalf("bad answer %v (%v)", resp, err)
	}
	return true
}

// exchangeTCP does the same over TCP; a refused connection is closed.
func exchangeTCP(t *testing.T, server net.Addr) bool {
	t.Helper()
	conn, err := net.Dial("tcp4", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	req := bindingRequest(t)
	_, _ = conn.Write(req.Raw) // may fail on a connection the guard closed
	head := make([]byte, 20)   // STUN header
	if _, err := io.ReadFull(conn, head); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("guard neither answered nor closed the connection")
		}
		return false
	}
	return true
}

func TestGuard(t *testing.T) {
	var allow atomic.Bool
	ts := startServer(t, nil, func(a netip.Addr) bool {
		if a != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("guard asked about %v", a)
		}
		return allow.Load()
	})
	allow.Store(true)
	if !exchangeUDP(t, ts.udp, 5*time.Second) {
		t.Fatal("allowed UDP source got no answer")
	}
	if !exchangeTCP(t, ts.tcp) {
		t.Fatal("TCP source got no answer")
	}
	allow.Store(false)
	if exchangeUDP(t, ts.udp, 300*time.Millisecond) {
		t.Error("refused UDP source got an answer")
	}
	// A refused client cannot allocate either.
	c := newClient(t, ts.udp, "alice", password)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if relay, err := c.AllocateWithContext(ctx); err == nil {
		_ = relay.Close()
		t.Error("refused client allocated")
	}
	if es := ts.events.all(); len(es) != 0 {
		t.Errorf("guard drops are the guard's business, no events here: %+v", es)
	}
}

func TestNewConfig(t *testing.T) {
	good := Config{Realm: realm, PublicAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // "" = valid
	}{
		{"minimal", func(*Config) {}, ""},
		{"no realm", func(c *Config) { c.Realm = "" }, "realm"},
		{"no public address", func(c *Config) { c.PublicAddrs = nil }, "public address"},
		{"unspecified public address", func(c *Config) { c.PublicAddrs = []netip.Addr{netip.IPv4Unspecified()} }, "public address"},
		{"two IPv4 public addresses", func(c *Config) {
			c.PublicAddrs = append(c.PublicAddrs, netip.MustParseAddr("192.0.2.2"))
		}, "second"},
		{"relay address without its family", func(c *Config) { c.RelayAddrs = []netip.Addr{netip.IPv6Loopback()} }, "relay address"},
		{"port range", func(c *Config) { c.PortMin, c.PortMax = 60000, 50000 }, "port range"},
		{"empty key", func(c *Config) { c.Settings.Users = map[string][]byte{"a": nil} }, "users"},
		{"negative quota", func(c *Config) { c.Settings.Quotas.PerUser = -1 }, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.modify(&c)
			s, err := New(c, Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.ports.min != int(DefaultPortMin) || s.ports.max != int(DefaultPortMax) || s.v4.bind != netip.IPv4Unspecified() || s.v6.public.IsValid() {
					t.Errorf("defaults: ports %d..%d v4 %+v v6 %+v", s.ports.min, s.ports.max, s.v4, s.v6)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want ErrConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	s, err := New(Config{Realm: realm, PublicAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stop, err := s.ServePacket("a", pc)
	if err != nil {
		t.Fatal(err)
	}
	// A second socket may carry the same name (a listener moving to a new
	// address on reload); stopping one leaves the other.
	pc2, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ServePacket("a", pc2); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := stop.Close(); err != nil {
			t.Errorf("stop #%d: %v", i+1, err)
		}
	}
	if _, _, err := pc.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket not closed by its stop: %v", err)
	}
	if !exchangeUDP(t, pc2.LocalAddr(), 5*time.Second) {
		t.Error("the other socket of the name stopped too")
	}
	for i := range 2 {
		if err := s.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if _, _, err := pc2.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket not closed by Close: %v", err)
	}
	pc3, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ServePacket("b", pc3); !errors.Is(err, ErrClosed) {
		t.Errorf("ServePacket after Close: %v", err)
	}
	if _, _, err := pc3.ReadFrom(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServePacket after Close left the socket open: %v", err)
	}
	c1, c2 := net.Pipe()
	defer c2.Close()
	if err := s.Stream("c").ServeConn(context.Background(), c1, netip.MustParseAddr("127.0.0.1")); !errors.Is(err, ErrClosed) {
		t.Errorf("ServeConn after Close: %v", err)
	}
	_ = c1.Close()
}
