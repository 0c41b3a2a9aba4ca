package listen

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/sniff"
)

// wrapper is a handler's own wrapper around the connection it was given.
type wrapper struct{ net.Conn }

func (w wrapper) NetConn() net.Conn { return w.Conn }

// TestAdmitRelease: the release Admit returns runs once, when the handler
// settles the connection (directly, through a wrapper, over TLS, also for
// a TLS connection that negotiated h2) or when it closes, whichever comes
// first; a refused connection never reaches a handler.
func TestAdmitRelease(t *testing.T) {
	p := newPKI(t, tlsLeaves)
	for _, tc := range []struct {
		name   string
		tls    bool
		alpn   []string
		settle func(net.Conn) // nil: the handler only closes
	}{
		{"plain, settled", false, nil, func(c net.Conn) { Settle(c) }},
		{"plain, settled twice through a wrapper", false, nil, func(c net.Conn) { Settle(wrapper{c}); Settle(c) }},
		{"plain, closed unsettled", false, nil, nil},
		{"TLS, settled", true, nil, func(c net.Conn) { Settle(c) }},
		{"TLS h2, settled through *tls.Conn", true, []string{"h2"}, func(c net.Conn) {
			if _, ok := c.(*tls.Conn); !ok {
				t.Errorf("h2 handler got %T, want *tls.Conn", c)
			}
			Settle(c)
		}},
		{"TLS, closed unsettled", true, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var released atomic.Int32
			atSettle := make(chan int32, 1)
			closeNow := make(chan struct{})
			h := HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
				if tc.settle != nil {
					tc.settle(c)
				}
				atSettle <- released.Load()
				<-closeNow
				return c.Close()
			})
			cfg := Config{
				Handlers: map[sniff.Proto]Handler{sniff.HTTP: h, sniff.HTTP2: h},
				Admit: func(context.Context, netip.Addr) (func(), bool) {
					return func() { released.Add(1) }, true
				},
			}
			if tc.tls {
				cfg.TLSMode = TLSRequired
				cfg.TLS = p.serverTLS(t, "default", false, "h2", "http/1.1")
			}
			ts := start(t, "tcp4", cfg)
			var c net.Conn
			if tc.tls {
				tlsc, err := tlsDial(t, ts, &tls.Config{RootCAs: p.pool, ServerName: "pbx.example.com", NextProtos: tc.alpn})
				if err != nil {
					t.Fatal(err)
				}
				c = tlsc
			} else {
				c = ts.dial(t)
			}
			first := "GET / HTTP/1.1\r\nHost: pbx.example.com\r\n\r\n"
			if len(tc.alpn) > 0 {
				first = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
			}
			if _, err := c.Write([]byte(first)); err != nil {
				t.Fatal(err)
			}
			want := int32(0)
			if tc.settle != nil {
				want = 1
			}
			if got := wait(t, atSettle, "the handler"); got != want {
				t.Errorf("released %d times before the close, want %d", got, want)
			}
			close(closeNow)
			expectClosed(t, c)
			waitInactive(t, ts.Active)
			if got := released.Load(); got != 1 {
				t.Errorf("released %d times in all, want 1", got)
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		ts := start(t, "tcp4", Config{
			Handlers: map[sniff.Proto]Handler{sniff.HTTP: HandlerFunc(func(context.Context, net.Conn, netip.Addr) error {
				t.Error("a refused connection reached its handler")
				return nil
			})},
			Admit: func(context.Context, netip.Addr) (func(), bool) { return nil, false },
		})
		c := ts.dial(t)
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		expectClosed(t, c)
	})
}

// TestAdmitAfterFirstBytes: a client that sends nothing is not admitted
// (it holds nothing a gate hands out); AdmitHold bounds how long an
// admitted connection whose handler never settles keeps its release.
func TestAdmitAfterFirstBytes(t *testing.T) {
	var admitted, released atomic.Int32
	closeNow := make(chan struct{})
	h := HandlerFunc(func(_ context.Context, c net.Conn, _ netip.Addr) error {
		<-closeNow
		return c.Close()
	})
	ts := start(t, "tcp4", Config{
		Handlers:  map[sniff.Proto]Handler{sniff.HTTP: h},
		AdmitHold: 100 * time.Millisecond,
		Admit: func(context.Context, netip.Addr) (func(), bool) {
			admitted.Add(1)
			return func() { released.Add(1) }, true
		},
	})
	defer close(closeNow)
	c := ts.dial(t)
	time.Sleep(100 * time.Millisecond)
	if n := admitted.Load(); n != 0 {
		t.Fatalf("admitted %d times before a byte came", n)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for released.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("admitted %d, released %d: AdmitHold did not release", admitted.Load(), released.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a, r := admitted.Load(), released.Load(); a != 1 || r != 1 {
		t.Errorf("admitted %d, released %d; want 1 and 1", a, r)
	}
}
