package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pbxgate/pbxgate/internal/event"
	"go.uber.org/goleak"
)

// leakCheck registers goleak to run after every other cleanup.
func leakCheck(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

func TestServerRouting(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	wild := newBackend(t, "wild", nil)
	other := newBackend(t, "other", nil)
	services := []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
		{Name: "wild", Hosts: []string{"*.example.com"}, Backend: Backend{Address: backendAddr(wild)}},
		{Name: "other", Hosts: []string{"other.test"}, Backend: Backend{Address: backendAddr(other)}},
	}
	env := startProxy(t, modePlain, Options{Services: services, DefaultService: "other"}, ServerOptions{})
	url := "http://" + env.addr + "/x?q=1"
	for _, tt := range []struct{ host, want string }{
		{"prov.example.com", "prov"},
		{"PROV.Example.COM.:8080", "prov"},
		{"x.example.com", "wild"},
		{"a.b.example.com", "other"}, // '*' is one label
		{"example.com", "other"},
		{"other.test", "other"},
		{"unknown.test", "other"},
	} {
		t.Run(tt.host, func(t *testing.T) {
			r := curl(t, "-H", "Host: "+tt.host, url)
			if r.status != 200 {
				t.Fatalf("status %d", r.status)
			}
			e := decodeEcho(t, r.body)
			if e.Service != tt.want || e.URI != "/x?q=1" || e.Host != tt.host {
				t.Fatalf("reached %+v, want service %s, URI /x?q=1, Host %s", e, tt.want, tt.host)
			}
		})
	}
	if evs := env.events.Events(); len(evs) != 0 {
		t.Fatalf("events for routed requests: %+v", evs)
	}

	t.Run("unknown host without default", func(t *testing.T) {
		env.swap(t, Options{Services: services})
		n := len(env.events.Events())
		r := curl(t, "-H", "Host: nope.test", url)
		if r.status != 404 || r.body != "404 page not found\n" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		evs := findEvents(eventsSince(env.events, n), event.RejectedByGateway, event.ReasonUnknownHost)
		if len(evs) != 1 {
			t.Fatalf("events: %+v", env.events.Events())
		}
		e := evs[0]
		if e.Detail != "nope.test" || e.Source != netip.MustParseAddr("127.0.0.1") || e.Listener != "web" ||
			e.Proto != "http" || e.Service != "" || e.Time.IsZero() {
			t.Fatalf("event %+v", e)
		}
	})

	t.Run("HTTP/1.0 without Host", func(t *testing.T) {
		n := len(env.events.Events())
		resp := rawRequest(t, env.addr, "GET / HTTP/1.0\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.0 404") {
			t.Fatalf("response %q", resp)
		}
		if evs := findEvents(eventsSince(env.events, n), event.RejectedByGateway, event.ReasonMissingHost); len(evs) != 1 {
			t.Fatalf("events: %+v", env.events.Events())
		}
	})
}

// TestServerSNIRouting checks that a request without Host (HTTP/1.0) over
// TLS is routed by the TLS server name, and the backend gets that Host.
func TestServerSNIRouting(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	env := startProxy(t, modeTLSConn, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}}, ServerOptions{})
	r := curl(t, "-k", "-0", "-H", "Host:", "--resolve", "prov.example.com:"+env.port+":127.0.0.1",
		"https://prov.example.com:"+env.port+"/sni")
	if r.status != 200 {
		t.Fatalf("status %d body %q", r.status, r.body)
	}
	e := decodeEcho(t, r.body)
	if e.Service != "prov" || e.Host != "prov.example.com" || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("backend saw %+v", e)
	}
}

func TestServerPathRules(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	svc := func(cdrNet string) Options {
		return Options{Services: []Service{{
			Name: "prov", Hosts: []string{"prov.example.com"},
			Backend: Backend{Address: backendAddr(prov)},
			Rules:   cdrRules(t, cdrNet),
		}}}
	}
	env := startProxy(t, modePlain, svc("10.20.0.0/16"), ServerOptions{})
	base := "http://" + env.addr
	get := func(t *testing.T, target string) curlResult {
		return curl(t, "--path-as-is", "-H", "Host: prov.example.com", base+target)
	}
	for _, tt := range []struct {
		target string
		status int
		why    string // expected in the event detail
	}{
		{"/", 403, `deny "= /"`},
		{"/login.php", 403, `deny "= /login.php"`},
		{"//login.php", 403, `deny "= /login.php"`},
		{"/./login.php", 403, `deny "= /login.php"`},
		{"/a/../login.php", 403, `deny "= /login.php"`},
		{"/%6cogin.php", 403, `deny "= /login.php"`},
		{"/%2e%2e/index.php", 403, `deny "= /index.php"`},
		{"/index.php?page=1", 403, `deny "= /index.php"`},
		{"/app/provision/../../login.php", 403, `deny "= /login.php"`},
		{"/app/xml_cdr/xml_cdr_import.php", 403, `"= /app/xml_cdr/xml_cdr_import.php" is reserved`},
		{"/app/other.php", 403, "default deny"},
		{"/app/provision/00aabbccddee.cfg", 200, ""},
		{"/app/provision/%30%30aabbccddee.cfg", 200, ""},
		{"/a%2Flogin.php", 400, "encoded slash"},
		{"/a%00", 400, "control byte"},
	} {
		t.Run(tt.target, func(t *testing.T) {
			n := len(env.events.Events())
			r := get(t, tt.target)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d (body %q)", r.status, tt.status, r.body)
			}
			evs := eventsSince(env.events, n)
			switch tt.status {
			case 200:
				e := decodeEcho(t, r.body)
				if e.URI != tt.target { // forwarded as sent, not normalized
					t.Fatalf("backend saw %q", e.URI)
				}
				if len(evs) != 0 {
					t.Fatalf("events: %+v", evs)
				}
			case 403, 400:
				reason := event.ReasonDeniedPath
				if tt.status == 400 {
					reason = event.ReasonBadRequest
				}
				got := findEvents(evs, event.RejectedByGateway, reason)
				if len(got) != 1 || !strings.Contains(got[0].Detail, tt.why) || got[0].Service != "prov" {
					t.Fatalf("events %+v, want one %s containing %q", evs, reason, tt.why)
				}
				if strings.Contains(r.body, `"Service"`) {
					t.Fatalf("backend reached: %q", r.body)
				}
			}
		})
	}
	t.Run("import allowed from its network", func(t *testing.T) {
		env.swap(t, svc("127.0.0.0/8"))
		r := get(t, "/app/xml_cdr/xml_cdr_import.php")
		if r.status != 200 || decodeEcho(t, r.body).URI != "/app/xml_cdr/xml_cdr_import.php" {
			t.Fatalf("got %d %q", r.status, r.body)
		}
		if r := get(t, "/login.php"); r.status != 403 {
			t.Fatalf("login.php: %d", r.status)
		}
	})
}

func TestServerForwardedHeaders(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	opts := func(trusted ...netip.Prefix) Options {
		rules, err := CompileRules(RulesSpec{Deny: []RuleSpec{{
			Pattern: "/blocked/", Networks: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		return Options{TrustedProxies: trusted, Services: []Service{{
			Name: "prov", Hosts: []string{"prov.example.com"},
			Backend: Backend{Address: backendAddr(prov)}, Rules: rules,
		}}}
	}
	env := startProxy(t, modePlain, opts(), ServerOptions{})
	base := "http://" + env.addr
	spoof := []string{
		"-H", "Host: prov.example.com",
		"-H", "X-Forwarded-For: 203.0.113.7",
		"-H", "Forwarded: for=203.0.113.7;proto=https",
		"-H", "X-Real-IP: 203.0.113.7",
		"-H", "X-Forwarded-Proto: https",
		"-H", "X-Forwarded-Host: evil.test",
		"-H", "X-Forwarded-Port: 1",
	}

	t.Run("untrusted peer", func(t *testing.T) {
		e := decodeEcho(t, curl(t, append(spoof, base+"/x")...).body)
		h := e.Header
		for k, want := range map[string][]string{
			"X-Forwarded-For":   {"127.0.0.1"},
			"X-Forwarded-Proto": {"http"},
			"X-Forwarded-Host":  {"prov.example.com"},
			"Forwarded":         {"for=127.0.0.1;proto=http;host=prov.example.com"},
			"X-Real-Ip":         nil,
			"X-Forwarded-Port":  nil,
		} {
			if !slices.Equal(h[k], want) {
				t.Errorf("%s = %q, want %q", k, h[k], want)
			}
		}
		// The spoofed address is not the client: the network rule does not apply.
		if r := curl(t, append(spoof, base+"/blocked/x")...); r.status != 200 {
			t.Errorf("/blocked/ from untrusted peer: %d", r.status)
		}
		n := len(env.events.Events())
		curl(t, append(spoof, base+"/status/401")...)
		if evs := findEvents(eventsSince(env.events, n), event.RejectedByService, event.ReasonAuthChallenge); len(evs) != 1 ||
			evs[0].Source != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("events %+v, want one from 127.0.0.1", evs)
		}
	})

	t.Run("trusted peer", func(t *testing.T) {
		env.swap(t, opts(netip.MustParsePrefix("127.0.0.0/8")))
		e := decodeEcho(t, curl(t, append(spoof, base+"/x")...).body)
		h := e.Header
		for k, want := range map[string][]string{
			"X-Forwarded-For":   {"203.0.113.7, 127.0.0.1"},
			"X-Forwarded-Proto": {"https"},
			"X-Forwarded-Host":  {"evil.test"},
			"Forwarded":         {"for=203.0.113.7;proto=https", "for=127.0.0.1;proto=http;host=prov.example.com"},
			"X-Real-Ip":         {"203.0.113.7"},
			"X-Forwarded-Port":  {"1"},
		} {
			if !slices.Equal(h[k], want) {
				t.Errorf("%s = %q, want %q", k, h[k], want)
			}
		}
		n := len(env.events.Events())
		if r := curl(t, append(spoof, base+"/blocked/x")...); r.status != 403 {
			t.Errorf("/blocked/ for client 203.0.113.7: %d", r.status)
		}
		// A trusted hop in the chain is skipped.
		curl(t, "-H", "Host: prov.example.com", "-H", "X-Forwarded-For: 203.0.113.9, 127.0.0.5", base+"/status/403")
		evs := eventsSince(env.events, n)
		if len(evs) != 2 || evs[0].Reason != event.ReasonDeniedPath || evs[0].Source != netip.MustParseAddr("203.0.113.7") ||
			evs[1].Reason != event.ReasonStatus || evs[1].Source != netip.MustParseAddr("203.0.113.9") {
			t.Errorf("events %+v", evs)
		}
	})

	t.Run("banned client behind a trusted proxy", func(t *testing.T) {
		o := opts(netip.MustParsePrefix("127.0.0.0/8"))
		o.Allowed = func(a netip.Addr) bool { return a != netip.MustParseAddr("203.0.113.66") }
		env.swap(t, o)
		n := len(env.events.Events())
		if r := curl(t, "-H", "Host: prov.example.com", "-H", "X-Forwarded-For: 203.0.113.66", base+"/x"); r.status != 403 {
			t.Errorf("banned client: %d, want 403", r.status)
		}
		if evs := eventsSince(env.events, n); len(evs) != 0 {
			t.Errorf("a banned client's request emitted %+v", evs)
		}
		if r := curl(t, "-H", "Host: prov.example.com", "-H", "X-Forwarded-For: 203.0.113.67", base+"/x"); r.status != 200 {
			t.Errorf("another client through the same proxy: %d, want 200", r.status)
		}
		// The peer itself is the listener's business, not asked again.
		o.Allowed = func(netip.Addr) bool { return false }
		env.swap(t, o)
		if r := curl(t, "-H", "Host: prov.example.com", base+"/x"); r.status != 200 {
			t.Errorf("request from the proxy itself: %d, want 200", r.status)
		}
	})
}

func TestServerBackendErrors(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	env := startProxy(t, modePlain, Options{
		ResponseHeaderTimeout: 300 * time.Millisecond,
		Services: []Service{
			{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
			{Name: "dead", Hosts: []string{"dead.example.com"}, Backend: Backend{Address: deadAddr}},
		},
	}, ServerOptions{})
	base := "http://" + env.addr
	digest := `Digest username="bob", realm="pbx", nonce="1", uri="/", response="x"`
	for _, tt := range []struct {
		name   string
		args   []string
		status int
		kind   event.Kind // 0: no event
		reason string
		user   string
		detail string
	}{
		{"unreachable", []string{"-H", "Host: dead.example.com", base + "/"}, 502, event.BackendUnreachable, event.ReasonDial, "", "connection refused"},
		{"timeout", []string{"-H", "Host: prov.example.com", base + "/slow"}, 504, event.BackendUnreachable, event.ReasonDial, "", "timeout"},
		{"401 basic", []string{"-u", "alice:secret", "-H", "Host: prov.example.com", base + "/status/401"}, 401, event.RejectedByService, event.ReasonStatus, "alice", "401"},
		{"403 anonymous", []string{"-H", "Host: prov.example.com", base + "/status/403"}, 403, event.RejectedByService, event.ReasonStatus, "", "403"},
		{"401 anonymous is a login prompt", []string{"-H", "Host: prov.example.com", base + "/status/401"}, 401, event.RejectedByService, event.ReasonAuthChallenge, "", "401"},
		{"200 basic", []string{"-u", "alice:secret", "-H", "Host: prov.example.com", base + "/"}, 200, event.Success, event.ReasonOK, "alice", "200"},
		{"302 digest", []string{"-H", "Authorization: " + digest, "-H", "Host: prov.example.com", base + "/status/302"}, 302, event.Success, event.ReasonOK, "bob", "302"},
		{"200 anonymous", []string{"-H", "Host: prov.example.com", base + "/"}, 200, 0, "", "", ""},
		{"404", []string{"-u", "alice:secret", "-H", "Host: prov.example.com", base + "/status/404"}, 404, 0, "", "", ""},
		{"500", []string{"-H", "Host: prov.example.com", base + "/status/500"}, 500, 0, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := len(env.events.Events())
			r := curl(t, tt.args...)
			if r.status != tt.status {
				t.Fatalf("status %d, want %d", r.status, tt.status)
			}
			evs := eventsSince(env.events, n)
			if tt.kind == 0 {
				if len(evs) != 0 {
					t.Fatalf("events %+v", evs)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("events %+v, want one", evs)
			}
			e := evs[0]
			if e.Kind != tt.kind || e.Reason != tt.reason || e.User != tt.user || !strings.Contains(e.Detail, tt.detail) ||
				e.Service == "" || e.Proto != "http" || e.Source != netip.MustParseAddr("127.0.0.1") {
				t.Fatalf("event %+v, want %v %s user %q detail ~%q", e, tt.kind, tt.reason, tt.user, tt.detail)
			}
		})
	}
}

func TestServerHTTP2AndTLS(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	opts := Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}}
	check := func(t *testing.T, r curlResult, version string, tls bool) {
		t.Helper()
		if r.status != 200 || r.version != version {
			t.Fatalf("status %d version %s, want 200 %s", r.status, r.version, version)
		}
		e := decodeEcho(t, r.body)
		proto := "http"
		if tls {
			proto = "https"
		}
		if e.Service != "prov" || e.Proto != "HTTP/1.1" || e.Header.Get("X-Forwarded-Proto") != proto ||
			!strings.Contains(e.Header.Get("Forwarded"), "proto="+proto) || !strings.HasPrefix(e.Host, "prov.example.com") {
			t.Fatalf("backend saw %+v", e)
		}
	}
	t.Run("h2 over TLS (ALPN, *tls.Conn)", func(t *testing.T) {
		env := startProxy(t, modeTLSConn, opts, ServerOptions{})
		resolve := []string{"-k", "--resolve", "prov.example.com:" + env.port + ":127.0.0.1"}
		u := "https://prov.example.com:" + env.port + "/h2"
		check(t, curl(t, append(resolve, "--http2", u)...), "2", true)
		check(t, curl(t, append(resolve, "--http1.1", u)...), "1.1", true)
	})
	t.Run("h2 prior knowledge on plain", func(t *testing.T) {
		env := startProxy(t, modePlain, opts, ServerOptions{})
		check(t, curl(t, "--http2-prior-knowledge", "-H", "Host: prov.example.com", "http://"+env.addr+"/h2c"), "2", false)
		check(t, curl(t, "-H", "Host: prov.example.com", "http://"+env.addr+"/h1"), "1.1", false)
	})
	t.Run("TLS terminated by the listener", func(t *testing.T) {
		env := startProxy(t, modeStater, opts, ServerOptions{})
		check(t, curl(t, "-k", "--resolve", "prov.example.com:"+env.port+":127.0.0.1",
			"https://prov.example.com:"+env.port+"/stated"), "1.1", true)
	})
	t.Run("h2 on a non-tls.Conn is refused", func(t *testing.T) {
		s := NewServer(ServerOptions{}, &Swappable{})
		a, b := net.Pipe()
		defer b.Close()
		err := s.ServeConn(&statedConn{a, tls.ConnectionState{NegotiatedProtocol: "h2", HandshakeComplete: true}})
		if !errors.Is(err, ErrH2NeedsTLSConn) {
			t.Fatalf("ServeConn = %v", err)
		}
		if _, err := a.Write([]byte("x")); err == nil {
			t.Fatal("conn not closed")
		}
		if err := s.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestServerWebSocket(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	rules, err := CompileRules(RulesSpec{Deny: []RuleSpec{{Pattern: "= /ws", Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}})
	if err != nil {
		t.Fatal(err)
	}
	env := startProxy(t, modePlain, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
		{Name: "locked", Hosts: []string{"locked.example.com"}, Backend: Backend{Address: backendAddr(prov)}, Rules: rules},
	}}, ServerOptions{})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("carol:pw"))

	t.Run("round trip", func(t *testing.T) {
		n := len(env.events.Events())
		c, resp, err := websocket.DefaultDialer.Dial("ws://"+env.addr+"/ws", http.Header{
			"Host": {"prov.example.com"}, "Authorization": {auth},
		})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		resp.Body.Close()
		for _, msg := range []string{"hello", "again"} {
			if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, got, err := c.ReadMessage()
			if err != nil || string(got) != "prov:"+msg {
				t.Fatalf("read %q, %v", got, err)
			}
		}
		evs := findEvents(eventsSince(env.events, n), event.Success, event.ReasonOK)
		if len(evs) != 1 || evs[0].User != "carol" || evs[0].Detail != "101" {
			t.Fatalf("events %+v", env.events.Events())
		}
	})
	t.Run("path rules apply before the upgrade", func(t *testing.T) {
		n := len(env.events.Events())
		_, resp, err := websocket.DefaultDialer.Dial("ws://"+env.addr+"/ws", http.Header{"Host": {"locked.example.com"}})
		if !errors.Is(err, websocket.ErrBadHandshake) || resp == nil || resp.StatusCode != 403 {
			t.Fatalf("dial: %v %v", err, resp)
		}
		resp.Body.Close()
		if evs := findEvents(eventsSince(env.events, n), event.RejectedByGateway, event.ReasonDeniedPath); len(evs) != 1 {
			t.Fatalf("events %+v", env.events.Events())
		}
	})
	t.Run("curl upgrade", func(t *testing.T) {
		bin := needPeer(t, "curl", "curl")
		// curl 7.88 cannot speak WebSocket: it prints the 101 and waits
		// until the backend closes (/ws?close does so at once).
		cmd := exec.Command(bin, "-sS", "-i", "-N", "--max-time", "5",
			"-H", "Host: prov.example.com", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
			"-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
			"http://"+env.addr+"/ws?close")
		out, _ := cmd.Output()
		if !strings.HasPrefix(string(out), "HTTP/1.1 101 Switching Protocols") ||
			!strings.Contains(string(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
			t.Fatalf("curl output %q", out)
		}
	})
}

func TestServerRefusals(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	opts := Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}}
	env := startProxy(t, modePlain, opts, ServerOptions{})

	expectOne := func(t *testing.T, n int, detail string) {
		t.Helper()
		evs := eventsSince(env.events, n)
		if len(evs) != 1 || evs[0].Kind != event.RejectedByGateway || evs[0].Reason != event.ReasonBadRequest ||
			!strings.Contains(evs[0].Detail, detail) || evs[0].Source != netip.MustParseAddr("127.0.0.1") ||
			evs[0].Listener != "web" || evs[0].Proto != "http" {
			t.Fatalf("events %+v, want one bad_request ~%q", evs, detail)
		}
	}
	t.Run("1 MB header", func(t *testing.T) {
		// curl refuses header lines this long, so use a raw socket.
		n := len(env.events.Events())
		req := "GET / HTTP/1.1\r\nHost: prov.example.com\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n"
		if resp := rawRequest(t, env.addr, req); !strings.HasPrefix(resp, "HTTP/1.1 431") {
			t.Fatalf("response %q", resp)
		}
		expectOne(t, n, "431 Request Header Fields Too Large")
	})
	t.Run("HTTP/1.1 without Host", func(t *testing.T) {
		n := len(env.events.Events())
		if resp := rawRequest(t, env.addr, "GET / HTTP/1.1\r\n\r\n"); !strings.HasPrefix(resp, "HTTP/1.1 400") {
			t.Fatalf("response %q", resp)
		}
		expectOne(t, n, "missing required Host header")
	})
	t.Run("malformed request line", func(t *testing.T) {
		n := len(env.events.Events())
		if resp := rawRequest(t, env.addr, "HELLO WORLD, HOW ARE YOU\r\n\r\n"); !strings.HasPrefix(resp, "HTTP/1.1 400") {
			t.Fatalf("response %q", resp)
		}
		expectOne(t, n, "400")
	})
	t.Run("handler answers are not counted twice", func(t *testing.T) {
		n := len(env.events.Events())
		resp := rawRequest(t, env.addr, "GET /a%2Fb HTTP/1.1\r\nHost: prov.example.com\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 400") {
			t.Fatalf("response %q", resp)
		}
		expectOne(t, n, "encoded slash")
	})
	t.Run("over terminated TLS", func(t *testing.T) {
		tenv := startProxy(t, modeStater, opts, ServerOptions{})
		n := len(tenv.events.Events())
		c, err := tls.Dial("tcp", tenv.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp := readResponse(t, c, "GET / HTTP/1.1\r\n\r\n")
		if !strings.HasPrefix(resp, "HTTP/1.1 400") {
			t.Fatalf("response %q", resp)
		}
		evs := eventsSince(tenv.events, n)
		if len(evs) != 1 || evs[0].Reason != event.ReasonBadRequest {
			t.Fatalf("events %+v", evs)
		}
	})
}

func TestServerNoOwnEndpoints(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	env := startProxy(t, modePlain, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}}, ServerOptions{})
	for _, p := range []string{"/debug/pprof/", "/debug/vars", "/metrics", "/healthz", "/admin/"} {
		r := curl(t, "-H", "Host: prov.example.com", "http://"+env.addr+p)
		if r.status != 200 || decodeEcho(t, r.body).URI != p {
			t.Errorf("%s: %d %q, want the backend's answer", p, r.status, r.body)
		}
		if r := curl(t, "-H", "Host: 127.0.0.1", "http://"+env.addr+p); r.status != 404 {
			t.Errorf("%s for an unknown host: %d", p, r.status)
		}
	}
}

func TestServerShutdown(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	env := startProxy(t, modePlain, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}}, ServerOptions{})
	c, resp, err := websocket.DefaultDialer.Dial("ws://"+env.addr+"/ws", http.Header{"Host": {"prov.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := env.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WebSocket still open after Shutdown: %v", err)
	}
	a, b := net.Pipe()
	defer b.Close()
	if err := env.srv.ServeConn(a); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("ServeConn after Shutdown = %v", err)
	}
}

func TestSwappableEmpty(t *testing.T) {
	leakCheck(t)
	s := NewServer(ServerOptions{}, &Swappable{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = s.ServeConn(c)
		}
	}()
	resp := rawRequest(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(resp, "HTTP/1.1 503") {
		t.Fatalf("response %q", resp)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// rawRequest sends req on a new connection and returns everything the
// server answers until it closes.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return readResponse(t, c, req)
}

func readResponse(t *testing.T, c net.Conn, req string) string {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// Write concurrently: the server may answer (and close) before it has
	// read everything, as it does for oversized headers.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = io.WriteString(c, req)
	}()
	b, err := io.ReadAll(bufio.NewReader(c))
	<-wrote
	if err != nil && len(b) == 0 {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}
