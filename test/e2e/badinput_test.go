package e2e

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

const badInputConfig = `data_dir: {{.DataDir}}
timeouts:
  first_bytes: 1s
tls:
  certificates:
    - {name: a, cert: {{.A}}, key: {{.AKey}}}
listeners:
  - name: web
    address: {{.Web}}
    protocols: [http]
  - name: strict
    address: {{.Strict}}
    tls: required
    strict_sni: true
    protocols: [http]
  - name: dir
    address: {{.Dir}}
    protocols: [ldap]
services:
  - name: alpha
    protocol: http
    hosts: [alpha.example.test, a.example.test]
    backend: {address: {{.Alpha}}}
  - name: example
    protocol: ldap
    domains: [example.com]
    backend: {address: {{.Slapd}}}
`

// dial connects to addr with a bounded connect time.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed reads from c until the gateway closes it and returns what it
// sent. The test fails when c stays open for longer than within.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	got, err := io.ReadAll(io.LimitReader(c, 1<<20))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v (got %q)", within, got)
	}
	return got
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	slapd := startSlapd(t)
	web, strict, dir := freeAddr(t), freeAddr(t), freeAddr(t)
	g := startGateway(t, render(t, badInputConfig, map[string]any{
		"A": p.A, "AKey": p.AKey, "Web": web, "Strict": strict, "Dir": dir,
		"Alpha": addrOf(echoBackend(t, "alpha")), "Slapd": slapd,
	}))

	t.Run("random bytes", func(t *testing.T) {
		c := dial(t, web)
		if _, err := c.Write([]byte{0x00, 0xff, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04}); err != nil {
			t.Fatal(err)
		}
		if got := waitClosed(t, c, 5*time.Second); len(got) != 0 {
			t.Errorf("gateway answered garbage with %q", got)
		}
		g.waitEvent(map[string]string{
			"kind": "rejected_by_gateway", "reason": "unknown_protocol", "listener": "web", "src": "127.0.0.1",
		})
	})

	t.Run("slow client", func(t *testing.T) {
		// OPTIONS is both an HTTP and a SIP method, so the gateway cannot
		// tell the protocol before the request line's version: one byte
		// every 200 ms never gets there within first_bytes (1s).
		const slow = "OPTIONS /a/slow/request/line HTTP/1.1\r\n"
		c := dial(t, web)
		start := time.Now()
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < len(slow); i++ {
				if _, err := c.Write([]byte{slow[i]}); err != nil {
					return
				}
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		}()
		waitClosed(t, c, 5*time.Second)
		if took := time.Since(start); took > 2500*time.Millisecond || took < 900*time.Millisecond {
			t.Errorf("slow client closed after %v, want about 1s (first_bytes)", took)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "first_bytes_timeout", "listener": "web"})
	})

	t.Run("1 MB of headers", func(t *testing.T) {
		// curl reads at most 100 KB per header line from a file, so the
		// megabyte comes as 1024 header lines of 1 KB.
		var b strings.Builder
		for i := range 1024 {
			fmt.Fprintf(&b, "X-Big-%d: %s\n", i, strings.Repeat("a", 1000))
		}
		hdr := writeFile(t, t.TempDir(), "headers", b.String())
		r := curlHost(t, "http", "alpha.example.test", web, "/", "-H", "@"+hdr)
		if r.Status != 431 {
			t.Fatalf("status %d (curl exit %d %s), want 431", r.Status, r.Exit, r.Stderr)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "bad_request", "listener": "web"})
	})

	t.Run("HTTP/1.0 without Host", func(t *testing.T) {
		c := dial(t, web)
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no HTTP answer: %v", err)
		}
		resp.Body.Close()
		// HTTP/1.0 may omit Host, so the request is well-formed; with no
		// default service there is nothing to route it to: 404, as for an
		// unknown host, but reported as missing_host.
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "missing_host", "listener": "web"})
	})

	t.Run("unknown SNI on a strict listener", func(t *testing.T) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", strict, &tls.Config{ServerName: "unknown.example.test", RootCAs: p.Pool})
		if err == nil {
			name := c.ConnectionState().PeerCertificates[0].Subject.CommonName
			c.Close()
			t.Fatalf("handshake with an unknown SNI succeeded, certificate %s", name)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "unknown_sni", "listener": "strict"})
		// A known name still works on the same listener.
		r := curlHost(t, "https", "a.example.test", strict, "/", "--cacert", p.CA)
		if r.Status != 200 {
			t.Errorf("known SNI on the strict listener: exit %d status %d %s", r.Exit, r.Status, r.Stderr)
		}
	})

	t.Run("truncated BER", func(t *testing.T) {
		for name, msg := range map[string][]byte{
			// A whole LDAPMessage frame whose BindRequest claims 5 bytes but
			// holds 2.
			"inner element cut": {0x30, 0x07, 0x02, 0x01, 0x01, 0x60, 0x05, 0x02, 0x01},
			// A frame announcing 12 bytes, cut after 3 and half-closed.
			"frame cut": {0x30, 0x0c, 0x02, 0x01, 0x01},
		} {
			t.Run(name, func(t *testing.T) {
				before := g.countEvents(map[string]string{"kind": "rejected_by_gateway", "listener": "dir"})
				c := dial(t, dir)
				if _, err := c.Write(msg); err != nil {
					t.Fatal(err)
				}
				if name == "frame cut" {
					c.(*net.TCPConn).CloseWrite()
				}
				waitClosed(t, c, 5*time.Second)
				_, ok := g.stderr.waitFor(logTimeout, g.done, func(string) bool {
					return g.countEvents(map[string]string{"kind": "rejected_by_gateway", "listener": "dir"}) > before
				})
				if !ok {
					t.Fatalf("no rejected_by_gateway event on the ldap listener:\n%s", g.stderr.String())
				}
			})
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "malformed_bind", "listener": "dir"})
	})

	t.Run("HTTP on the LDAP listener", func(t *testing.T) {
		r := curl(t, "http://"+dir+"/")
		if r.Status == 200 {
			t.Fatalf("HTTP served on an ldap-only listener: %s", r.Body)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "protocol_refused", "listener": "dir"})
	})

	t.Run("still healthy", func(t *testing.T) {
		r := curlHost(t, "http", "alpha.example.test", web, "/ok")
		if r.Status != 200 || r.echo(t).Backend != "alpha" {
			t.Fatalf("normal request after the abuse: status %d %s", r.Status, r.Stderr)
		}
		out, code := ldapsearch(t, nil, "-x", "-H", "ldap://"+dir, "-D", slapdAdmin, "-w", slapdPass, "-b", slapdSuffix, "-s", "base")
		if code != 0 {
			t.Fatalf("ldapsearch after the abuse: exit %d\n%s", code, out)
		}
		if g.exited() {
			t.Fatal("pbxgate exited")
		}
	})
}
