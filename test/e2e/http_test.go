package e2e

import (
	"strings"
	"testing"
)

const httpConfig = `data_dir: {{.DataDir}}
listeners:
  - name: web
    address: {{.Web}}
    protocols: [http]
    default_service: fallback
  - name: strict
    address: {{.Strict}}
    protocols: [http]
  - name: behind-proxy
    address: {{.Trusting}}
    protocols: [http]
    trusted_proxies: [127.0.0.0/8]
services:
  - name: alpha
    protocol: http
    hosts: [alpha.example.test]
    backend: {address: {{.Alpha}}}
  - name: beta
    protocol: http
    hosts: [beta.example.test]
    backend: {address: {{.Beta}}}
  - name: wild
    protocol: http
    hosts: ["*.wild.example.test"]
    backend: {address: {{.Wild}}}
  - name: fallback
    protocol: http
    hosts: [fallback.example.test]
    backend: {address: {{.Fallback}}}
  - name: dead
    protocol: http
    hosts: [dead.example.test]
    backend: {address: {{.Dead}}}
{{range .Prov}}  - name: {{.Name}}
    protocol: http
    hosts: [{{.Host}}]
    backend: {address: {{$.ProvAddr}}}
    paths:
      default: deny
      deny: ["= /", "= /login.php", "= /index.php"]
      allow:
        - /app/provision/
        - path: "= /app/xml_cdr/xml_cdr_import.php"
          methods: [POST]
          networks: [{{.Net}}]
{{end}}`

// provService is the provisioning example of DESIGN.md, instantiated once
// with the SIP nodes' network (10.20.0.0/24) and once with loopback.
type provService struct{ Name, Host, Net string }

func TestHTTPRouting(t *testing.T) {
	t.Parallel()
	web, strict, trusting := freeAddr(t), freeAddr(t), freeAddr(t)
	g := startGateway(t, render(t, httpConfig, map[string]any{
		"Web": web, "Strict": strict, "Trusting": trusting,
		"Alpha":    addrOf(echoBackend(t, "alpha")),
		"Beta":     addrOf(echoBackend(t, "beta")),
		"Wild":     addrOf(echoBackend(t, "wild")),
		"Fallback": addrOf(echoBackend(t, "fallback")),
		"Dead":     deadAddr(t),
		"ProvAddr": addrOf(echoBackend(t, "prov")),
		"Prov": []provService{
			{"prov", "prov.example.test", "10.20.0.0/24"},
			{"prov-local", "prov-local.example.test", "127.0.0.0/8"},
		},
	}))

	t.Run("routed by Host", func(t *testing.T) {
		for host, backend := range map[string]string{
			"alpha.example.test":       "alpha",
			"beta.example.test":        "beta",
			"BETA.Example.Test":        "beta",
			"one.wild.example.test":    "wild",
			"two.wild.example.test":    "wild",
			"a.b.wild.example.test":    "fallback", // * is one label
			"unknown.example.test":     "fallback", // default_service
			"fallback.example.test":    "fallback",
			"wild.example.test":        "fallback", // * needs a label
			"alpha.example.test.other": "fallback",
		} {
			r := curlHost(t, "http", host, web, "/some/path?q=1")
			if r.Status != 200 {
				t.Errorf("%s: status %d, want 200 (%s)", host, r.Status, r.Body)
				continue
			}
			e := r.echo(t)
			if e.Backend != backend {
				t.Errorf("%s: answered by %s, want %s", host, e.Backend, backend)
			}
			if e.Method != "GET" || e.Path != "/some/path?q=1" {
				t.Errorf("%s: backend saw %s %s, want GET /some/path?q=1", host, e.Method, e.Path)
			}
		}
	})

	t.Run("unknown host without default is 404", func(t *testing.T) {
		r := curlHost(t, "http", "nowhere.example.test", strict, "/")
		if r.Status != 404 {
			t.Fatalf("status %d, want 404: %s", r.Status, r.Body)
		}
		if strings.Contains(r.Body, "Backend") {
			t.Errorf("a 404 for an unknown host reached a backend: %s", r.Body)
		}
		g.waitEvent(map[string]string{
			"kind": "rejected_by_gateway", "reason": "unknown_host",
			"listener": "strict", "src": "127.0.0.1", "proto": "http",
		})
	})

	t.Run("provisioning path rules", func(t *testing.T) {
		cases := []struct {
			name, host, method, path string
			status                   int
		}{
			{"root denied", "prov.example.test", "GET", "/", 403},
			{"login denied", "prov.example.test", "GET", "/login.php", 403},
			{"index denied", "prov.example.test", "GET", "/index.php", 403},
			{"not allowed by default", "prov.example.test", "GET", "/app/other/", 403},
			{"provision allowed", "prov.example.test", "GET", "/app/provision/001122334455.cfg", 200},
			{"provision subdir allowed", "prov.example.test", "GET", "/app/provision/yealink/y0000.boot", 200},
			{"exact rule is not a prefix", "prov.example.test", "GET", "/login.php.bak", 403},
			{"cdr import from outside its network", "prov.example.test", "POST", "/app/xml_cdr/xml_cdr_import.php", 403},
			{"cdr import wrong method", "prov-local.example.test", "GET", "/app/xml_cdr/xml_cdr_import.php", 403},
			{"cdr import from its network", "prov-local.example.test", "POST", "/app/xml_cdr/xml_cdr_import.php", 200},
			{"local root still denied", "prov-local.example.test", "GET", "/", 403},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := curlHost(t, "http", c.host, strict, c.path, "-X", c.method)
				if r.Status != c.status {
					t.Fatalf("%s %s on %s: status %d, want %d (%s)", c.method, c.path, c.host, r.Status, c.status, r.Body)
				}
				if c.status == 200 {
					if e := r.echo(t); e.Backend != "prov" || e.Method != c.method || e.Path != c.path {
						t.Errorf("backend saw %+v", e)
					}
				} else if strings.Contains(r.Body, "Backend") {
					t.Errorf("denied request reached the backend: %s", r.Body)
				}
			})
		}
		g.waitEvent(map[string]string{
			"kind": "rejected_by_gateway", "reason": "denied_path",
			"service": "prov", "listener": "strict", "src": "127.0.0.1",
		})
	})

	t.Run("forwarding headers set, spoofed ones dropped", func(t *testing.T) {
		r := curlHost(t, "http", "alpha.example.test", web, "/fwd",
			"-H", "X-Forwarded-For: 203.0.113.9",
			"-H", "X-Forwarded-Proto: https",
			"-H", "X-Forwarded-Host: evil.example",
			"-H", "Forwarded: for=203.0.113.9;proto=https")
		e := r.echo(t)
		h := e.Header
		if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want 127.0.0.1 only", got)
		}
		if got := h.Get("X-Forwarded-Proto"); got != "http" {
			t.Errorf("X-Forwarded-Proto = %q, want http", got)
		}
		if got := h.Get("X-Forwarded-Host"); !strings.HasPrefix(got, "alpha.example.test") {
			t.Errorf("X-Forwarded-Host = %q, want alpha.example.test[:port]", got)
		}
		fwd := h.Get("Forwarded")
		if !strings.Contains(fwd, "for=127.0.0.1") && !strings.Contains(fwd, `for="127.0.0.1`) {
			t.Errorf("Forwarded = %q, want for=127.0.0.1", fwd)
		}
		if !strings.Contains(fwd, "proto=http") {
			t.Errorf("Forwarded = %q, want proto=http", fwd)
		}
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, "203.0.113.9") || strings.Contains(v, "evil.example") {
					t.Errorf("spoofed value reached the backend: %s: %s", k, v)
				}
			}
		}
		if len(h.Values("X-Forwarded-For")) != 1 {
			t.Errorf("X-Forwarded-For sent %d times: %q", len(h.Values("X-Forwarded-For")), h.Values("X-Forwarded-For"))
		}
	})

	t.Run("forwarding headers from a trusted proxy are kept", func(t *testing.T) {
		r := curlHost(t, "http", "alpha.example.test", trusting, "/fwd", "-H", "X-Forwarded-For: 203.0.113.9")
		got := r.echo(t).Header.Get("X-Forwarded-For")
		if got != "203.0.113.9, 127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want \"203.0.113.9, 127.0.0.1\"", got)
		}
		// Events name the client the trusted proxy vouches for.
		curlHost(t, "http", "nowhere.example.test", trusting, "/", "-H", "X-Forwarded-For: 198.51.100.7")
		g.waitEvent(map[string]string{"reason": "unknown_host", "listener": "behind-proxy", "src": "198.51.100.7"})
	})

	t.Run("dead backend is 502", func(t *testing.T) {
		r := curlHost(t, "http", "dead.example.test", web, "/")
		if r.Status != 502 {
			t.Fatalf("status %d, want 502: %s", r.Status, r.Body)
		}
		g.waitEvent(map[string]string{
			"kind": "backend_unreachable", "reason": "dial", "service": "dead", "listener": "web",
		})
	})
}
