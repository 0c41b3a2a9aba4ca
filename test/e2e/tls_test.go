package e2e

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const tlsConfig = `data_dir: {{.DataDir}}
tls:
  certificates:
    - {name: a, cert: {{.A}}, key: {{.AKey}}}
    - {name: b, cert: {{.B}}, key: {{.BKey}}}
listeners:
  - name: secure
    address: {{.Secure}}
    tls: required
    certificate: a
    protocols: [http]
  - name: mixed
    address: {{.Mixed}}
    tls: optional
    protocols: [http]
services:
  - name: svc-a
    protocol: http
    hosts: [a.example.test]
    backend: {address: {{.BackendA}}}
  - name: svc-wild
    protocol: http
    hosts: ["*.wild.example.test"]
    backend: {address: {{.BackendWild}}}
  - name: svc-b
    protocol: http
    hosts: [b.example.test]
    backend: {address: {{.BackendB}}}
  - name: inner
    protocol: http
    hosts: [inner.example.test]
    backend:
      address: {{.Inner}}
      tls: true
      ca: {{.InnerCA}}
`

// servedCertName dials addr with TLS, sending sni (none when empty), and
// returns the common name of the certificate the gateway presented. It does
// not verify the chain: curl does that in the other subtests.
func servedCertName(t *testing.T, addr, sni string) string {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS to %s with SNI %q: %v", addr, sni, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	inner, innerCA := tlsEchoBackend(t, "inner")
	secure, mixed := freeAddr(t), freeAddr(t)
	g := startGateway(t, render(t, tlsConfig, map[string]any{
		"A": p.A, "AKey": p.AKey, "B": p.B, "BKey": p.BKey,
		"Secure": secure, "Mixed": mixed,
		"BackendA":    addrOf(echoBackend(t, "a")),
		"BackendWild": addrOf(echoBackend(t, "wild")),
		"BackendB":    addrOf(echoBackend(t, "b")),
		"Inner":       addrOf(inner), "InnerCA": innerCA,
	}))

	t.Run("SNI chooses the certificate", func(t *testing.T) {
		for sni, cn := range map[string]string{
			"a.example.test":      "a.example.test",
			"x.wild.example.test": "a.example.test",
			"b.example.test":      "b.example.test",
			"":                    "a.example.test", // the listener's default
			"other.example.test":  "a.example.test", // not strict: the default
		} {
			if got := servedCertName(t, secure, sni); got != cn {
				t.Errorf("SNI %q: served %s, want %s", sni, got, cn)
			}
		}
		// mixed names no certificate: the first one is its default.
		if got := servedCertName(t, mixed, ""); got != "a.example.test" {
			t.Errorf("no SNI on a listener without certificate: served %s, want the first (a.example.test)", got)
		}
	})

	t.Run("curl over TLS with SNI routing", func(t *testing.T) {
		for host, backend := range map[string]string{
			"a.example.test":      "a",
			"b.example.test":      "b",
			"x.wild.example.test": "wild",
		} {
			for _, addr := range []string{secure, mixed} {
				r := curlHost(t, "https", host, addr, "/tls", "--cacert", p.CA, "--http2")
				if r.Exit != 0 || r.Status != 200 {
					t.Fatalf("https://%s via %s: curl exit %d status %d: %s", host, addr, r.Exit, r.Status, r.Stderr)
				}
				if r.Version != "2" {
					t.Errorf("https://%s via %s with --http2: HTTP version %q, want 2", host, addr, r.Version)
				}
				e := r.echo(t)
				if e.Backend != backend {
					t.Errorf("https://%s: answered by %s, want %s", host, e.Backend, backend)
				}
				if got := e.Header.Get("X-Forwarded-Proto"); got != "https" {
					t.Errorf("https://%s: X-Forwarded-Proto %q, want https", host, got)
				}
			}
		}
		r := curlHost(t, "https", "a.example.test", secure, "/", "--cacert", p.CA, "--http1.1")
		if r.Status != 200 || r.Version != "1.1" {
			t.Errorf("--http1.1: status %d version %q, want 200 1.1", r.Status, r.Version)
		}
	})

	t.Run("optional listener serves plain http on the same port", func(t *testing.T) {
		r := curlHost(t, "http", "a.example.test", mixed, "/plain")
		if r.Status != 200 {
			t.Fatalf("status %d: %s %s", r.Status, r.Body, r.Stderr)
		}
		e := r.echo(t)
		if e.Backend != "a" || e.Header.Get("X-Forwarded-Proto") != "http" {
			t.Errorf("got backend %s, X-Forwarded-Proto %q; want a, http", e.Backend, e.Header.Get("X-Forwarded-Proto"))
		}
	})

	t.Run("plaintext refused on a TLS-only listener", func(t *testing.T) {
		r := curlHost(t, "http", "a.example.test", secure, "/")
		if r.Status == 200 || strings.Contains(r.Body, "Backend") {
			t.Fatalf("plain HTTP on a tls: required listener was served: %d %s", r.Status, r.Body)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "tls_required", "listener": "secure"})
	})

	t.Run("TLS toward the backend behind a plain listener", func(t *testing.T) {
		r := curlHost(t, "http", "inner.example.test", mixed, "/inside")
		if r.Status != 200 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		if e := r.echo(t); e.Backend != "inner" || !e.TLS || e.Path != "/inside" {
			t.Errorf("backend saw %+v, want inner over TLS", e)
		}
	})
}

const selfSignedConfig = `data_dir: {{.DataDir}}
listeners:
  - name: web
    address: {{.Web}}
    tls: optional
    protocols: [http]
    default_service: portal
services:
  - name: portal
    protocol: http
    hosts: [portal.example.test]
    backend: {address: {{.Portal}}}
`

func TestSelfSignedCertificate(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	web := freeAddr(t)
	conf := render(t, selfSignedConfig, map[string]any{
		"DataDir": dataDir, "Web": web, "Portal": addrOf(echoBackend(t, "portal")),
	})
	certFile := filepath.Join(dataDir, "selfsigned.crt")

	// start runs the gateway, checks the warning and an HTTPS request that
	// trusts the generated certificate, stops it and returns the certificate.
	start := func() []byte {
		t.Helper()
		g := startGateway(t, conf)
		warn := g.waitLogContains("self-signed")
		if warn["level"] != "WARN" {
			t.Errorf("self-signed notice logged at %s, want WARN: %v", warn["level"], warn)
		}
		if !strings.Contains(warn["msg"], "!!!") && !strings.Contains(warn["msg"], "SELF-SIGNED") {
			t.Errorf("self-signed warning is not loud: %q", warn["msg"])
		}
		pem, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatalf("self-signed certificate not written to the data dir: %v", err)
		}
		r := curlHost(t, "https", "portal.example.test", web, "/", "--cacert", certFile)
		if r.Status != 200 || r.echo(t).Backend != "portal" {
			t.Errorf("https with the generated certificate: exit %d status %d %s", r.Exit, r.Status, r.Stderr)
		}
		// A client that sends no SNI (an IP address URL) gets the same
		// certificate, which covers 127.0.0.1.
		r = curl(t, "--cacert", certFile, "https://"+web+"/")
		if r.Status != 200 || r.echo(t).Backend != "portal" {
			t.Errorf("https://%s (no SNI) with the generated certificate: exit %d status %d %s", web, r.Exit, r.Status, r.Stderr)
		}
		g.stop()
		return pem
	}
	first := start()
	second := start()
	if string(first) != string(second) {
		t.Errorf("restart generated a new certificate instead of reusing %s", certFile)
	}
}
