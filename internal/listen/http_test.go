package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/pbxgate/pbxgate/internal/sniff"
)

// chanListener feeds connections from a listen handler to an http.Server,
// the way the HTTP proxy hands them to net/http.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// ServeConn hands c to the http.Server and returns at once.
func (l *chanListener) ServeConn(ctx context.Context, c net.Conn, _ netip.Addr) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.closed:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// httpStack runs listen → net/http with a handler that reports what
// net/http saw of the connection.
func httpStack(t *testing.T, p *pki) *testServer {
	t.Helper()
	cl := newChanListener()
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sni, alpn := "-", "-"
			if r.TLS != nil {
				sni, alpn = r.TLS.ServerName, r.TLS.NegotiatedProtocol
				if alpn == "" {
					alpn = "none"
				}
			}
			fmt.Fprintf(w, "proto=%s tls=%v sni=%s alpn=%s", r.Proto, r.TLS != nil, sni, alpn)
		}),
		ReadHeaderTimeout: waitTimeout,
		ErrorLog:          nil,
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	hs.Protocols = &protos
	httpDone := make(chan error, 1)
	go func() { httpDone <- hs.Serve(cl) }()
	ts := start(t, "tcp4", Config{
		TLSMode:  TLSOptional,
		TLS:      p.serverTLS(t, "default", false, "h2", "http/1.1"),
		Handlers: map[sniff.Proto]Handler{sniff.HTTP: cl},
	})
	t.Cleanup(func() { // runs before the listen server's cleanup
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			t.Errorf("http Shutdown: %v", err)
		}
		if err := <-httpDone; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("http Serve: %v", err)
		}
	})
	return ts
}

// TestNetHTTP checks the connections listen hands out against net/http:
// Request.TLS is set through ConnectionState on HTTP/1.1 over TLS, HTTP/2 is
// served through TLSNextProto on the *tls.Conn, plaintext has no TLS state.
func TestNetHTTP(t *testing.T) {
	p := newPKI(t, tlsLeaves)
	ts := httpStack(t, p)
	_, port, _ := net.SplitHostPort(ts.addr)
	tests := []struct {
		name string
		url  string
		h2   bool
		want string
	}{
		{"https without ALPN", "https://pbx.example.com:" + port + "/", false, "proto=HTTP/1.1 tls=true sni=pbx.example.com alpn=none"},
		{"https h2", "https://acme.tenant.example.com:" + port + "/", true, "proto=HTTP/2.0 tls=true sni=acme.tenant.example.com alpn=h2"},
		{"http", "http://pbx.example.com:" + port + "/", false, "proto=HTTP/1.1 tls=false sni=- alpn=-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, ts.addr)
				},
				TLSClientConfig:   &tls.Config{RootCAs: p.pool},
				ForceAttemptHTTP2: tt.h2,
			}
			if !tt.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: waitTimeout}
			resp, err := client.Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.want {
				t.Fatalf("got %q\nwant %q", body, tt.want)
			}
		})
	}
	if evs := ts.events.Events(); len(evs) != 0 {
		t.Fatalf("events: %+v", evs)
	}
}

// TestCurl runs curl (OpenSSL, nghttp2) through listen into net/http.
func TestCurl(t *testing.T) {
	curl := needBinary(t, "curl", "curl")
	p := newPKI(t, tlsLeaves)
	ts := httpStack(t, p)
	_, port, _ := net.SplitHostPort(ts.addr)
	resolve := "pbx.example.com:" + port + ":127.0.0.1"
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"h2 over TLS", []string{"--http2", "https://pbx.example.com:" + port + "/"}, "proto=HTTP/2.0 tls=true sni=pbx.example.com alpn=h2"},
		{"http/1.1 over TLS", []string{"--http1.1", "https://pbx.example.com:" + port + "/"}, "proto=HTTP/1.1 tls=true sni=pbx.example.com alpn=http/1.1"},
		{"h2c prior knowledge", []string{"--http2-prior-knowledge", "http://pbx.example.com:" + port + "/"}, "proto=HTTP/2.0 tls=false sni=- alpn=-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			args := append([]string{"-sS", "--insecure", "--max-time", "8", "--resolve", resolve}, tt.args...)
			out, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if string(out) != tt.want {
				t.Fatalf("curl got %q\nwant %q", out, tt.want)
			}
		})
	}
	// Let curl's connections drain: the listen count must reach zero.
	waitInactive(t, ts.Active)
}
