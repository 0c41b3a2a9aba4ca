package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/certs"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
	"github.com/pbxgate/pbxgate/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixedNow stamps every event in tests.
var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// waitTimeout bounds every wait in these tests; reaching it is a failure.
const waitTimeout = 10 * time.Second

// needBinary fails the test when an external client is missing.
func needBinary(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("needs %s (apt-get install -y %s)", bin, pkg)
	}
	return path
}

// testServer is a Server serving on a loopback listener.
type testServer struct {
	*Server
	addr   string
	events *event.Recorder
	served chan error
}

// start runs a Server for c on network ("tcp4" on 127.0.0.1, "tcp6" on
// ::1) and shuts it down when the test ends, checking Serve's result.
func start(t *testing.T, network string, c Config) *testServer {
	t.Helper()
	host := "127.0.0.1:0"
	if network == "tcp6" {
		host = "[::1]:0"
	}
	ln, err := Listen(context.Background(), network, host)
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, ln, c)
}

func startOn(t *testing.T, ln net.Listener, c Config) *testServer {
	t.Helper()
	rec := &event.Recorder{}
	s, err := New(Options{Name: "test", Events: rec, Now: func() time.Time { return fixedNow }}, c)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), events: rec, served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(context.Background(), ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-ts.served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Serve did not return")
		}
	})
	return ts
}

func (ts *testServer) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", ts.addr, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(waitTimeout))
	return c.(*net.TCPConn)
}

// onlyEvent asserts that exactly one event was recorded and returns it.
func (ts *testServer) onlyEvent(t *testing.T) event.Event {
	t.Helper()
	evs := ts.events.Events()
	if len(evs) != 1 {
		t.Fatalf("want 1 event, got %d: %+v", len(evs), evs)
	}
	return evs[0]
}

// checkEvent asserts the fields every listener event carries.
func checkEvent(t *testing.T, e event.Event, src netip.Addr, proto, reason string) {
	t.Helper()
	if e.Kind != event.RejectedByGateway || e.Listener != "test" || e.Source != src ||
		e.Proto != proto || e.Reason != reason || !e.Time.Equal(fixedNow) {
		t.Fatalf("event %+v, want src=%v proto=%q reason=%q", e, src, proto, reason)
	}
}

// expectClosed reads from c until the server closes it and fails if the
// server sends anything.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Fatalf("server sent %q before closing", b)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("read: %v (want EOF or reset)", err)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// got is what a recording handler saw.
type got struct {
	name     string
	src      netip.Addr
	conn     net.Conn
	peeked   []byte
	raw      bool
	data     []byte // everything read until EOF
	tlsState *tls.ConnectionState
}

// recorder returns a handler that records the connection, reads it to EOF,
// answers "ok:name" and closes.
func recorder(name string, out chan<- got) Handler {
	return HandlerFunc(func(ctx context.Context, c net.Conn, src netip.Addr) error {
		g := got{name: name, src: src, conn: c}
		if pc, ok := c.(interface{ Peeked() []byte }); ok {
			g.peeked = bytes.Clone(pc.Peeked())
		}
		if rc, ok := c.(interface{ Raw() *net.TCPConn }); ok {
			g.raw = rc.Raw() != nil
		}
		if cs, ok := c.(interface {
			ConnectionState() tls.ConnectionState
		}); ok {
			st := cs.ConnectionState()
			g.tlsState = &st
		}
		_ = c.SetDeadline(time.Now().Add(waitTimeout))
		data, err := io.ReadAll(c)
		g.data = data
		if err == nil {
			_, err = io.WriteString(c, "ok:"+name)
		}
		c.Close()
		out <- g
		return err
	})
}

func receive(t *testing.T, ch <-chan got) got {
	t.Helper()
	select {
	case g := <-ch:
		return g
	case <-time.After(waitTimeout):
		t.Fatal("handler not called")
		return got{}
	}
}

// exchange writes payload in two pieces, half-closes and returns the reply.
func exchange(t *testing.T, c net.Conn, payload []byte) string {
	t.Helper()
	if _, err := c.Write(payload[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(payload[1:]); err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	return string(reply)
}

// pki is a test CA and the certificate store built from its leaves.
type pki struct {
	pool  *x509.CertPool
	store *certs.Store
}

// newPKI writes one CA-signed leaf per name→hosts entry (name as common
// name) and loads them.
func newPKI(t *testing.T, leaves map[string][]string) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.New(t, "listen test CA")
	var pairs []certs.Pair
	for name, hosts := range leaves {
		certFile, keyFile := ca.WriteLeaf(t, dir, name, name, hosts...)
		pairs = append(pairs, certs.Pair{Name: name, CertFile: certFile, KeyFile: keyFile})
	}
	st, err := certs.Load(pairs)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{pool: ca.Pool(), store: st}
}

// serverTLS builds a listener tls.Config from the store.
func (p *pki) serverTLS(t *testing.T, def string, strict bool, protos ...string) *tls.Config {
	t.Helper()
	c, err := certs.ServerConfig(p.store, def, strict, 0, protos)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// samples are first flights of each protocol, longer than the sniff buffer
// where it matters so the replay must join buffer and socket.
var samples = func() map[string][]byte {
	body := bytes.Repeat([]byte("0123456789abcdef"), 1500) // 24000 bytes
	return map[string][]byte{
		"http":        append([]byte("POST /upload HTTP/1.1\r\nHost: pbx.example.com\r\nContent-Length: 24000\r\n\r\n"), body...),
		"http2":       append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"), body[:100]...),
		"sip":         []byte("REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"),
		"sip-options": []byte("OPTIONS sip:example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n"),
		"ldap":        {0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00},
		"garbage":     append([]byte("\x00\x01\x02SSH-2.0-scanner\r\n"), body[:9000]...),
	}
}()

// handlersFor returns recording handlers for HTTP, SIP and LDAP (HTTP2
// falls back to HTTP).
func handlersFor(out chan<- got) map[sniff.Proto]Handler {
	return map[sniff.Proto]Handler{
		sniff.HTTP: recorder("http", out),
		sniff.SIP:  recorder("sip", out),
		sniff.LDAP: recorder("ldap", out),
	}
}

func loopback(network string) netip.Addr {
	if network == "tcp6" {
		return netip.IPv6Loopback()
	}
	return netip.MustParseAddr("127.0.0.1")
}
