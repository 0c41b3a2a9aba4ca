package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
)

var tlsLeaves = map[string][]string{
	"pbx":     {"pbx.example.com"},
	"tenants": {"*.tenant.example.com"},
	"default": {"default.example.com"},
}

// tlsDial runs a TLS handshake to ts and returns the client conn.
func tlsDial(t *testing.T, ts *testServer, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	c := ts.dial(t)
	tc := tls.Client(c, cfg)
	err := tc.Handshake()
	return tc, err
}

func TestTLSTermination(t *testing.T) {
	p := newPKI(t, tlsLeaves)
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			out := make(chan got, 1)
			ts := start(t, network, Config{
				TLSMode:  TLSOptional,
				TLS:      p.serverTLS(t, "default", false, "h2", "http/1.1"),
				Handlers: handlersFor(out),
			})
			tests := []struct {
				name     string
				sni      string
				alpn     []string
				sample   string
				wantCert string // CN the client sees
				wantH2   bool
				handler  string
			}{
				{"exact SNI", "pbx.example.com", nil, "http", "pbx", false, "http"},
				{"wildcard SNI", "acme.tenant.example.com", nil, "sip", "tenants", false, "sip"},
				{"upper-case SNI", "PBX.Example.COM", nil, "ldap", "pbx", false, "ldap"},
				{"no SNI gets default", "", nil, "http", "default", false, "http"},
				{"unknown SNI gets default", "other.example.org", nil, "http", "default", false, "http"},
				{"ALPN http/1.1", "pbx.example.com", []string{"http/1.1"}, "http", "pbx", false, "http"},
				{"ALPN h2", "pbx.example.com", []string{"h2", "http/1.1"}, "http2", "pbx", true, "http"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					cfg := &tls.Config{ServerName: tt.sni, RootCAs: p.pool, NextProtos: tt.alpn}
					if tt.sni == "" || tt.wantCert == "default" {
						cfg.InsecureSkipVerify = true // the default cert does not match
					}
					c, err := tlsDial(t, ts, cfg)
					if err != nil {
						t.Fatal(err)
					}
					if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != tt.wantCert {
						t.Fatalf("server presented %q, want %q", cn, tt.wantCert)
					}
					payload := samples[tt.sample]
					if reply := exchange(t, c, payload); reply != "ok:"+tt.handler {
						t.Fatalf("reply %q", reply)
					}
					g := receive(t, out)
					if !bytes.Equal(g.data, payload) {
						t.Fatalf("handler read %d bytes, want %d", len(g.data), len(payload))
					}
					if g.src != loopback(network) {
						t.Fatalf("src %v", g.src)
					}
					if g.raw {
						t.Fatal("Raw() is not nil under TLS")
					}
					if tt.wantH2 {
						tc, ok := g.conn.(*tls.Conn)
						if !ok {
							t.Fatalf("h2 handler got %T, want *tls.Conn", g.conn)
						}
						if tc.ConnectionState().NegotiatedProtocol != "h2" {
							t.Fatal("not h2")
						}
						return
					}
					tc, ok := g.conn.(*TLSConn)
					if !ok {
						t.Fatalf("handler got %T, want *listen.TLSConn", g.conn)
					}
					if g.tlsState == nil || g.tlsState.ServerName != tc.ConnectionState().ServerName || !g.tlsState.HandshakeComplete {
						t.Fatalf("ConnectionState %+v", g.tlsState)
					}
					if want := tt.sni; g.tlsState.ServerName != want {
						t.Fatalf("ServerName %q, want %q", g.tlsState.ServerName, want)
					}
					if len(g.peeked) == 0 || !bytes.HasPrefix(payload, g.peeked) {
						t.Fatalf("Peeked %q is not the plaintext prefix", g.peeked)
					}
				})
			}
			if evs := ts.events.Events(); len(evs) != 0 {
				t.Fatalf("events: %+v", evs)
			}
		})
	}
}

func TestTLSRefusals(t *testing.T) {
	p := newPKI(t, tlsLeaves)
	out := make(chan got, 1)
	onlyHTTP := map[sniff.Proto]Handler{sniff.HTTP: recorder("http", out)}
	t.Run("strict unknown SNI", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", true), Handlers: onlyHTTP})
		for _, sni := range []string{"other.example.org", ""} {
			c, err := tlsDial(t, ts, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
			if err == nil {
				t.Fatalf("SNI %q: handshake succeeded", sni)
			}
			expectClosedTLS(t, c)
		}
		evs := ts.events.Events()
		if len(evs) != 2 {
			t.Fatalf("events %+v", evs)
		}
		for _, e := range evs {
			checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "tls", event.ReasonUnknownSNI)
		}
		// Known names still work on the strict listener.
		c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool})
		if err != nil {
			t.Fatal(err)
		}
		if reply := exchange(t, c, samples["http"]); reply != "ok:http" {
			t.Fatalf("reply %q", reply)
		}
		receive(t, out)
	})
	t.Run("handshake failure", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSOptional, TLS: p.serverTLS(t, "default", false), Handlers: onlyHTTP})
		c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool, MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10})
		if err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
		expectClosedTLS(t, c)
		checkEvent(t, ts.onlyEvent(t), netip.MustParseAddr("127.0.0.1"), "tls", event.ReasonTLSHandshake)
	})
	t.Run("protocol refused inside TLS", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", false), Handlers: onlyHTTP})
		c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(samples["ldap"]); err != nil {
			t.Fatal(err)
		}
		expectClosedTLS(t, c)
		e := ts.onlyEvent(t)
		checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "ldap", event.ReasonProtocolRefused)
		if e.Detail != `0\f\x02\x01\x01`+"`"+`\a\x02\x01\x03\x… over TLS` {
			t.Fatalf("detail %q", e.Detail)
		}
	})
	t.Run("h2 without HTTP handler", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", false, "h2"),
			Handlers: map[sniff.Proto]Handler{sniff.LDAP: recorder("ldap", out)}})
		c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		expectClosedTLS(t, c)
		e := ts.onlyEvent(t)
		checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "http2", event.ReasonProtocolRefused)
		if e.Detail != "over TLS (ALPN h2)" {
			t.Fatalf("detail %q", e.Detail)
		}
	})
	t.Run("silence after handshake", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", false), Handlers: onlyHTTP, FirstBytesTimeout: 300 * time.Millisecond})
		c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool})
		if err != nil {
			t.Fatal(err)
		}
		expectClosedTLS(t, c)
		checkEvent(t, ts.onlyEvent(t), netip.MustParseAddr("127.0.0.1"), "tls", event.ReasonFirstBytesTimeout)
	})
	t.Run("handshake timeout", func(t *testing.T) {
		ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", false), Handlers: onlyHTTP, HandshakeTimeout: 200 * time.Millisecond})
		c := ts.dial(t)
		// A record header and the start of a ClientHello, then nothing.
		if _, err := c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		expectClosed(t, c)
		if d := time.Since(begin); d > 3*time.Second {
			t.Fatalf("closed after %v: the handshake did not get its own 200ms timeout", d)
		}
		e := ts.onlyEvent(t)
		checkEvent(t, e, netip.MustParseAddr("127.0.0.1"), "tls", event.ReasonTLSHandshake)
	})
	select {
	case g := <-out:
		t.Fatalf("refused connection reached handler %s", g.name)
	default:
	}
}

// expectClosedTLS waits until the server has closed a (possibly failed) TLS
// client connection.
func expectClosedTLS(t *testing.T, c *tls.Conn) {
	t.Helper()
	raw := c.NetConn() // a failed tls.Conn returns its error at once
	_ = raw.SetReadDeadline(time.Now().Add(waitTimeout))
	_, err := io.Copy(io.Discard, raw)
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("server did not close the connection")
	}
}

// The TLSConn half-closes with close_notify and FIN; the client can still
// send afterwards.
func TestTLSHalfClose(t *testing.T) {
	p := newPKI(t, tlsLeaves)
	done := make(chan error, 1)
	h := HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
		defer c.Close()
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			done <- err
			return err
		}
		if _, err := c.Write([]byte("bye")); err != nil {
			done <- err
			return err
		}
		if err := c.(*TLSConn).CloseWrite(); err != nil {
			done <- err
			return err
		}
		rest, err := io.ReadAll(c)
		if err == nil && string(rest) != "/ HTTP/1.0\r\n\r\nafter" {
			err = fmt.Errorf("read after CloseWrite: %q", rest)
		}
		done <- err
		return err
	})
	ts := start(t, "tcp4", Config{TLSMode: TLSRequired, TLS: p.serverTLS(t, "default", false), Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}})
	c, err := tlsDial(t, ts, &tls.Config{ServerName: "pbx.example.com", RootCAs: p.pool})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "bye" {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if _, err := io.WriteString(c, "after"); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
