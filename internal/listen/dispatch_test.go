package listen

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
)

func TestDispatchPlain(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			out := make(chan got, 1)
			ts := start(t, network, Config{Handlers: handlersFor(out), Fallback: recorder("fallback", out), SniffBuffer: 4096})
			tests := []struct{ sample, handler string }{
				{"http", "http"},
				{"http2", "http"}, // no HTTP2 handler: falls back to HTTP
				{"sip", "sip"},
				{"sip-options", "sip"},
				{"ldap", "ldap"},
				{"garbage", "fallback"},
			}
			for _, tt := range tests {
				t.Run(tt.sample, func(t *testing.T) {
					payload := samples[tt.sample]
					c := ts.dial(t)
					if reply := exchange(t, c, payload); reply != "ok:"+tt.handler {
						t.Fatalf("reply %q, want ok:%s", reply, tt.handler)
					}
					g := receive(t, out)
					if g.name != tt.handler {
						t.Fatalf("handled by %s, want %s", g.name, tt.handler)
					}
					if !bytes.Equal(g.data, payload) {
						t.Fatalf("handler read %d bytes, want the %d sent (first %q)", len(g.data), len(payload), g.data[:min(len(g.data), 40)])
					}
					if _, ok := g.conn.(*Conn); !ok {
						t.Fatalf("handler got %T, want *listen.Conn", g.conn)
					}
					if len(g.peeked) == 0 || !bytes.HasPrefix(payload, g.peeked) || len(g.peeked) > 4096 {
						t.Fatalf("Peeked() = %d bytes %q, want a prefix of the payload", len(g.peeked), g.peeked)
					}
					if !g.raw {
						t.Fatal("Raw() is nil on a plaintext TCP connection")
					}
					if g.tlsState != nil {
						t.Fatal("plaintext connection implements ConnectionState: net/http would think it is TLS")
					}
					if g.src != loopback(network) {
						t.Fatalf("src %v", g.src)
					}
				})
			}
			if evs := ts.events.Events(); len(evs) != 0 {
				t.Fatalf("events for accepted connections: %+v", evs)
			}
		})
	}
}

func TestHTTP2Handler(t *testing.T) {
	out := make(chan got, 1)
	h := handlersFor(out)
	h[sniff.HTTP2] = recorder("h2c", out)
	ts := start(t, "tcp4", Config{Handlers: h})
	if reply := exchange(t, ts.dial(t), samples["http2"]); reply != "ok:h2c" {
		t.Fatalf("reply %q", reply)
	}
	receive(t, out)
}

func TestRefusals(t *testing.T) {
	out := make(chan got, 1)
	onlyHTTP := map[sniff.Proto]Handler{sniff.HTTP: recorder("http", out)}
	tests := []struct {
		name   string
		cfg    Config
		sample string
		proto  string
		reason string
		detail string
	}{
		{"protocol not accepted", Config{Handlers: onlyHTTP}, "sip", "sip", event.ReasonProtocolRefused, "REGISTER sip:example.com SIP/2.0"},
		{"unknown without fallback", Config{Handlers: onlyHTTP}, "garbage", "unknown", event.ReasonUnknownProtocol, `\x00\x01\x02SSH-2.0-scanner\r\n0…`},
		{"undecided when buffer full", Config{Handlers: onlyHTTP, SniffBuffer: 64}, "long-options", "unknown", event.ReasonUnknownProtocol, "OPTIONS /" + strings.Repeat("a", 23)},
		{"plaintext on TLS-only", Config{Handlers: onlyHTTP, TLSMode: TLSRequired, TLS: newPKI(t, map[string][]string{"a": {"a.example"}}).serverTLS(t, "a", false)}, "http", "http", event.ReasonTLSRequired, "POST /upload HTTP/1.1\\r\\nHost: p…"},
		{"TLS on plaintext listener", Config{Handlers: onlyHTTP}, "clienthello", "tls", event.ReasonProtocolRefused, "TLS on a plaintext listener"},
	}
	samples := map[string][]byte{
		"sip":          samples["sip"],
		"garbage":      samples["garbage"],
		"http":         samples["http"],
		"long-options": []byte("OPTIONS /" + strings.Repeat("a", 200) + " HTTP/1.1\r\n\r\n"),
		"clienthello":  {0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := start(t, "tcp4", tt.cfg)
			c := ts.dial(t)
			if _, err := c.Write(samples[tt.sample]); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
			e := ts.onlyEvent(t)
			checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), tt.proto, tt.reason)
			if e.Detail != tt.detail {
				t.Fatalf("detail %q, want %q", e.Detail, tt.detail)
			}
			select {
			case g := <-out:
				t.Fatalf("refused connection reached handler %s", g.name)
			default:
			}
		})
	}
}

// A client that closes without sending anything (health check, port scan)
// is closed without an event.
func TestSilentClose(t *testing.T) {
	ts := start(t, "tcp4", Config{Handlers: handlersFor(make(chan got))})
	c := ts.dial(t)
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	if evs := ts.events.Events(); len(evs) != 0 {
		t.Fatalf("events: %+v", evs)
	}
	// A client that goes away in the middle of undecided bytes is an event.
	c = ts.dial(t)
	if _, err := c.Write([]byte("OPTIONS sip:")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, c)
	e := ts.onlyEvent(t)
	checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "unknown", event.ReasonUnknownProtocol)
	if e.Detail != "OPTIONS sip:" {
		t.Fatalf("detail %q", e.Detail)
	}
}

// A client that sends one byte per 100ms is cut at FirstBytesTimeout.
func TestFirstBytesTimeout(t *testing.T) {
	ts := start(t, "tcp4", Config{Handlers: handlersFor(make(chan got)), FirstBytesTimeout: 300 * time.Millisecond})
	c := ts.dial(t)
	begin := time.Now()
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for _, b := range []byte("OPTIONS sip:pbx.example.com SIP/2.0\r\n\r\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	expectClosed(t, c)
	elapsed := time.Since(begin)
	c.Close()
	<-writer
	if elapsed < 250*time.Millisecond || elapsed > 3*time.Second {
		t.Fatalf("closed after %v, want about 300ms", elapsed)
	}
	e := ts.onlyEvent(t)
	checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "unknown", event.ReasonFirstBytesTimeout)
	if !strings.HasPrefix("OPTIONS", e.Detail) || e.Detail == "" {
		t.Fatalf("detail %q, want the few bytes sent", e.Detail)
	}
}

// The plain Conn half-closes and splices through WriteTo.
func TestConnHalfCloseAndWriteTo(t *testing.T) {
	backend, err := Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	received := make(chan []byte, 1)
	go func() {
		b, err := backend.Accept()
		if err != nil {
			received <- nil
			return
		}
		defer b.Close()
		data, _ := io.ReadAll(b)
		received <- data
	}()
	done := make(chan error, 1)
	h := HandlerFunc(func(ctx context.Context, c net.Conn, src netip.Addr) error {
		defer c.Close()
		bc, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			done <- err
			return err
		}
		defer bc.Close()
		_, err = io.Copy(bc, c) // Conn.WriteTo: peeked bytes, then Raw
		bc.Close()
		if err == nil {
			_, err = io.WriteString(c, "copied")
		}
		if err == nil {
			err = c.(*Conn).CloseWrite()
		}
		done <- err
		return err
	})
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}})
	c := ts.dial(t)
	if reply := exchange(t, c, samples["http"]); reply != "copied" {
		t.Fatalf("reply %q", reply)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if data := <-received; !bytes.Equal(data, samples["http"]) {
		t.Fatalf("backend got %d bytes, want %d", len(data), len(samples["http"]))
	}
}

// scriptConn replays the same bytes to every reader; it is a stand-in
// socket for allocation tests.
type scriptConn struct {
	net.Conn
	data []byte
	off  int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	if c.off >= len(c.data) {
		return 0, io.EOF
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}
func (c *scriptConn) SetReadDeadline(time.Time) error { return nil }
func (c *scriptConn) SetDeadline(time.Time) error     { return nil }
func (c *scriptConn) Close() error                    { return nil }

// The sniff and dispatch decision allocates only the replay buffer and the
// Conn handed to the handler.
func TestPrepareAllocs(t *testing.T) {
	s, err := New(Options{}, Config{Handlers: handlersFor(make(chan got))})
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.cfg.Load()
	sc := &scriptConn{data: []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")}
	tc := &trackedConn{Conn: sc, srv: s}
	src := netip.MustParseAddr("192.0.2.1")
	ctx := context.Background()
	var c net.Conn
	allocs := testing.AllocsPerRun(200, func() {
		sc.off = 0
		var h Handler
		h, c, _ = s.prepare(ctx, cfg, tc, src)
		if h == nil {
			panic("refused")
		}
	})
	if allocs > 2 {
		t.Fatalf("prepare allocates %v times per connection, want <= 2", allocs)
	}
	if got := string(c.(*Conn).Peeked()); got != string(sc.data) {
		t.Fatalf("peeked %q", got)
	}
	buf := make([]byte, 64)
	replay := []byte("GET ")
	cc := c.(*Conn)
	if n := testing.AllocsPerRun(100, func() {
		cc.peeked = replay
		if n, err := cc.Read(buf); n != 4 || err != nil {
			panic("short replay")
		}
	}); n != 0 {
		t.Fatalf("replaying Read allocates %v", n)
	}
}

func BenchmarkPrepare(b *testing.B) {
	s, err := New(Options{}, Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: HandlerFunc(func(context.Context, net.Conn, netip.Addr) error { return nil })}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := s.cfg.Load()
	sc := &scriptConn{data: []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")}
	tc := &trackedConn{Conn: sc, srv: s}
	src := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		sc.off = 0
		s.prepare(context.Background(), cfg, tc, src)
	}
}
