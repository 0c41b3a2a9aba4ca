package httpproxy

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

func newHandler(t testing.TB, o Options) (*Handler, *event.Recorder) {
	t.Helper()
	rec := &event.Recorder{}
	o.Events = rec
	if o.Listener == "" {
		o.Listener = "web"
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, rec
}

// serve runs one request through h in process.
func serve(h http.Handler, method, target, host, remote string, hdr http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	if host != "" {
		r.Host = host
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	for k, v := range hdr {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestNewValidation(t *testing.T) {
	ok := Backend{Address: "127.0.0.1:8080"}
	tests := []struct {
		name string
		o    Options
		want []string // "" entries: must succeed
	}{
		{"valid", Options{
			Services: []Service{
				{Name: "a", Hosts: []string{"a.example.com", "*.example.com", "10.0.0.1", "::1"}, Backend: ok},
				{Name: "b", Hosts: []string{"b.test"}, Backend: Backend{Address: "[::1]:443", TLS: true, TLSConfig: &tls.Config{}}},
				{Name: "c", Backend: ok, RejectStatuses: []int{}},
			},
			DefaultService: "c",
			TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.0.2.0/120")},
		}, nil},
		{"duplicate host across services", Options{Services: []Service{
			{Name: "a", Hosts: []string{"x.example.com"}, Backend: ok},
			{Name: "b", Hosts: []string{"x.example.com"}, Backend: ok},
		}}, []string{`host "x.example.com" already belongs to service "a"`}},
		{"duplicate wildcard", Options{Services: []Service{
			{Name: "a", Hosts: []string{"*.example.com"}, Backend: ok},
			{Name: "b", Hosts: []string{"*.example.com"}, Backend: ok},
		}}, []string{`already belongs to service "a"`}},
		{"unknown default", Options{Services: []Service{{Name: "a", Backend: ok}}, DefaultService: "z"},
			[]string{`DefaultService "z" is not a service`}},
		{"everything at once", Options{
			MaxIdleConnsPerHost: -1,
			DialTimeout:         -time.Second,
			TrustedProxies:      []netip.Prefix{{}},
			Services: []Service{
				{Name: "", Backend: ok},
				{Name: "d", Backend: ok},
				{Name: "d", Backend: ok},
				{Name: "e", Backend: Backend{Address: "nohost"}},
				{Name: "f", Backend: Backend{Address: ":80"}},
				{Name: "g", Backend: Backend{Address: "h:0"}},
				{Name: "h", Backend: ok, Hosts: []string{"Upper.example.com", "a.com:80", "*.", "*.10.0.0.1", "a..b", "0:0::1"}},
				{Name: "i", Backend: ok, RejectStatuses: []int{42}},
				{Name: "j", Backend: Backend{Address: "h:1", TLSConfig: &tls.Config{}}},
			},
		}, []string{
			"MaxIdleConnsPerHost -1", "DialTimeout -1s", "TrustedProxies[0]", "Services[0]: empty Name",
			`Services[2] "d": duplicate service name`, `Services[3] "e": Backend.Address`, `Services[4] "f": Backend.Address: missing host`,
			`Services[5] "g": Backend.Address: bad port`, `host "Upper.example.com": must be lower-case`,
			`host "a.com:80": invalid character ':'`, `host "*.": empty`, `host "*.10.0.0.1": a wildcard`,
			`host "a..b": empty label`, `host "0:0::1": write the address as "::1"`, "RejectStatuses: 42",
			"TLSConfig set but Backend.TLS is false",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(tt.o)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				h.Close()
				return
			}
			if !errors.Is(err, ErrConfig) || h != nil {
				t.Fatalf("New = %v, %v; want ErrConfig", h, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestHostKey(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "",
		"example.com":       "example.com",
		"Example.COM":       "example.com",
		"example.com.":      "example.com",
		"example.com:8443":  "example.com",
		"example.com.:8443": "example.com",
		"[::1]:8443":        "::1",
		"[::1]":             "::1",
		"::1":               "::1",
		"10.0.0.1:80":       "10.0.0.1",
	} {
		if got := hostKey(in); got != want {
			t.Errorf("hostKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := trustedSet{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	a := netip.MustParseAddr
	tests := []struct {
		name string
		peer netip.Addr
		xff  []string
		want netip.Addr
	}{
		{"untrusted peer ignores xff", a("192.0.2.1"), []string{"203.0.113.7"}, a("192.0.2.1")},
		{"trusted without xff", a("10.0.0.1"), nil, a("10.0.0.1")},
		{"trusted with xff", a("10.0.0.1"), []string{"203.0.113.7"}, a("203.0.113.7")},
		{"right-most untrusted", a("10.0.0.1"), []string{"198.51.100.1, 203.0.113.7, 10.1.1.1"}, a("203.0.113.7")},
		{"several header lines", a("10.0.0.1"), []string{"198.51.100.1", "203.0.113.7", "10.1.1.1, 10.2.2.2"}, a("203.0.113.7")},
		{"all trusted", a("10.0.0.1"), []string{"10.9.9.9, 10.1.1.1"}, a("10.9.9.9")},
		{"garbage stops the walk", a("10.0.0.1"), []string{"203.0.113.7, nonsense, 10.1.1.1"}, a("10.1.1.1")},
		{"ports and brackets", a("10.0.0.1"), []string{"[2001:db8::7]:443"}, a("2001:db8::7")},
		{"bracketed v6", a("fd00::1"), []string{"[2001:db8::8]"}, a("2001:db8::8")},
		{"mapped", a("10.0.0.1"), []string{"::ffff:203.0.113.7"}, a("203.0.113.7")},
		{"empty entries", a("10.0.0.1"), []string{" , 203.0.113.7 ,, "}, a("203.0.113.7")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := trusted.clientAddr(tt.peer, tt.xff); got != tt.want {
				t.Fatalf("clientAddr = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestForwardedElement(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		peer        netip.Addr
		proto, host string
		want        string
	}{
		{a("192.0.2.1"), "http", "example.com", "for=192.0.2.1;proto=http;host=example.com"},
		{a("2001:db8::1"), "https", "example.com", `for="[2001:db8::1]";proto=https;host=example.com`},
		{a("192.0.2.1"), "https", "example.com:8443", `for=192.0.2.1;proto=https;host="example.com:8443"`},
		{a("192.0.2.1"), "http", `we"ird\`, `for=192.0.2.1;proto=http;host="we\"ird\\"`},
		{netip.Addr{}, "http", "", "for=unknown;proto=http"},
	}
	for _, tt := range tests {
		if got := forwardedElement(tt.peer, tt.proto, tt.host); got != tt.want {
			t.Errorf("forwardedElement(%v, %s, %q) = %s, want %s", tt.peer, tt.proto, tt.host, got, tt.want)
		}
	}
}

func TestAuthUser(t *testing.T) {
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tt := range []struct{ in, want string }{
		{basic("alice:secret"), "alice"},
		{basic("alice"), "alice"},
		{basic("al:ice:x"), "al"},
		{"basic " + base64.StdEncoding.EncodeToString([]byte("bob:x")), "bob"},
		{"Basic !!!", ""},
		{`Digest username="bob", realm="pbx", uri="/"`, "bob"},
		{`Digest realm="pbx",username="b\"ob"`, `b"ob`},
		{`Digest realm="a,b", username=carol, nonce=1`, "carol"},
		{`Digest nonce="x"`, ""},
		{"Bearer abc", ""},
		{"Basic", ""},
		{"", ""},
		{basic(strings.Repeat("u", 300) + ":p"), strings.Repeat("u", maxUserLen)},
		{`Digest username="` + strings.Repeat("v", 300) + `"`, strings.Repeat("v", maxUserLen)},
	} {
		if got := authUser(tt.in); got != tt.want {
			t.Errorf("authUser(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHandlerRequestForms(t *testing.T) {
	prov := newBackend(t, "prov", nil)
	h, rec := newHandler(t, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}})
	for _, tt := range []struct {
		name, method, target string
		hdr                  http.Header
		status               int
	}{
		{"origin form", "GET", "/x", nil, 200},
		{"options star", "OPTIONS", "*", nil, 200}, // answered by the backend's server
		{"get star", "GET", "*", nil, 400},
		{"absolute form", "GET", "http://prov.example.com/x", nil, 400},
		{"connect", "CONNECT", "prov.example.com:443", nil, 400},
		{"bad upgrade", "GET", "/ws", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"web\x01socket"}}, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := len(rec.Events())
			w := serve(h, tt.method, tt.target, "prov.example.com", "", tt.hdr)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%q)", w.Code, tt.status, w.Body.String())
			}
			evs := eventsSince(rec, n)
			if tt.status == 400 && (len(evs) != 1 || evs[0].Reason != event.ReasonBadRequest) {
				t.Fatalf("events %+v", evs)
			}
			if tt.status == 200 && len(evs) != 0 {
				t.Fatalf("events %+v", evs)
			}
		})
	}
}

func TestHandlerForwardedIPv6(t *testing.T) {
	prov := newBackend(t, "prov", nil)
	h, _ := newHandler(t, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}})
	for remote, want := range map[string][2]string{
		"[2001:db8::1]:5555":     {"2001:db8::1", `for="[2001:db8::1]";proto=http;host=prov.example.com`},
		"[::ffff:192.0.2.9]:555": {"192.0.2.9", `for=192.0.2.9;proto=http;host=prov.example.com`},
	} {
		w := serve(h, "GET", "/", "prov.example.com", remote, nil)
		var e echo
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if got := e.Header.Get("X-Forwarded-For"); got != want[0] {
			t.Errorf("%s: X-Forwarded-For %q, want %q", remote, got, want[0])
		}
		if got := e.Header.Get("Forwarded"); got != want[1] {
			t.Errorf("%s: Forwarded %q, want %q", remote, got, want[1])
		}
	}
}

func TestHandlerRejectStatuses(t *testing.T) {
	prov := newBackend(t, "prov", nil)
	h, rec := newHandler(t, Options{Services: []Service{
		{Name: "custom", Hosts: []string{"custom.test"}, Backend: Backend{Address: backendAddr(prov)}, RejectStatuses: []int{404}},
		{Name: "none", Hosts: []string{"none.test"}, Backend: Backend{Address: backendAddr(prov)}, RejectStatuses: []int{}},
	}})
	auth := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("dave:pw"))}}
	for _, tt := range []struct {
		host, path string
		want       string // "" no event, else the reason
	}{
		{"custom.test", "/status/404", event.ReasonStatus},
		{"custom.test", "/status/401", ""},
		{"none.test", "/status/401", ""},
		{"none.test", "/status/204", event.ReasonOK},
	} {
		n := len(rec.Events())
		serve(h, "GET", tt.path, tt.host, "", auth)
		evs := eventsSince(rec, n)
		if tt.want == "" {
			if len(evs) != 0 {
				t.Errorf("%s%s: events %+v", tt.host, tt.path, evs)
			}
			continue
		}
		if len(evs) != 1 || evs[0].Reason != tt.want || evs[0].User != "dave" {
			t.Errorf("%s%s: events %+v, want one %s", tt.host, tt.path, evs, tt.want)
		}
	}
}

func TestHandlerTLSBackend(t *testing.T) {
	tb := newBackend(t, "secure", func(ts *httptest.Server) {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	})
	roots := tb.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	h, rec := newHandler(t, Options{Services: []Service{
		{Name: "verified", Hosts: []string{"v.test"}, Backend: Backend{Address: backendAddr(tb), TLS: true,
			TLSConfig: &tls.Config{RootCAs: roots}}},
		{Name: "system", Hosts: []string{"s.test"}, Backend: Backend{Address: backendAddr(tb), TLS: true}},
	}})
	w := serve(h, "GET", "/x", "v.test", "", nil)
	var e echo
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
		t.Fatalf("%d %q: %v", w.Code, w.Body.String(), err)
	}
	if !e.TLS || e.Proto != "HTTP/2.0" || e.Host != "v.test" {
		t.Fatalf("backend saw %+v, want HTTP/2 over TLS", e)
	}
	w = serve(h, "GET", "/x", "s.test", "", nil)
	evs := findEvents(rec.Events(), event.BackendUnreachable, event.ReasonDial)
	if w.Code != 502 || len(evs) != 1 || !strings.Contains(evs[0].Detail, "certificate") || evs[0].Service != "system" {
		t.Fatalf("untrusted backend certificate: %d, events %+v", w.Code, rec.Events())
	}
}

func TestHandlerAccessLog(t *testing.T) {
	prov := newBackend(t, "prov", nil)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	h, _ := newHandler(t, Options{AccessLog: true, Log: log, Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}})
	serve(h, "GET", "/a/b?secret=1", "prov.example.com", "192.0.2.7:1000", nil)
	serve(h, "GET", "/", "nope.test", "192.0.2.7:1000", nil)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %s", buf.String())
	}
	var l1, l2 map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &l1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &l2); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"level": "INFO", "listener": "web", "src": "192.0.2.7", "host": "prov.example.com", "method": "GET",
		"path": "/a/b", "proto": "HTTP/1.1", "status": float64(200), "service": "prov", "component": "httpproxy",
	} {
		if l1[k] != want {
			t.Errorf("%s = %v, want %v in %s", k, l1[k], want, lines[0])
		}
	}
	if b, _ := l1["bytes"].(float64); b <= 0 {
		t.Errorf("bytes = %v", l1["bytes"])
	}
	if _, ok := l1["duration"]; !ok {
		t.Errorf("no duration in %s", lines[0])
	}
	if l2["status"] != float64(404) || l2["service"] != "" || l2["host"] != "nope.test" {
		t.Errorf("unknown host line %s", lines[1])
	}
	if strings.Contains(buf.String(), "secret") {
		t.Errorf("query logged: %s", buf.String())
	}
}

func TestHandlerClose(t *testing.T) {
	prov := newBackend(t, "prov", nil)
	h, _ := newHandler(t, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
	}})
	if w := serve(h, "GET", "/", "prov.example.com", "", nil); w.Code != 200 {
		t.Fatal(w.Code)
	}
	h.Close()
	h.Close()
	if w := serve(h, "GET", "/", "prov.example.com", "", nil); w.Code != 200 {
		t.Fatalf("after Close: %d", w.Code)
	}
}

// stubTransport answers every request in memory.
type stubTransport struct{}

func (stubTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	return &http.Response{
		StatusCode:    200,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(strings.NewReader("ok\n")),
		ContentLength: 3,
		Request:       r,
	}, nil
}

// BenchmarkServeHTTP measures the gateway's own work per request (routing,
// rules, forwarding headers, ReverseProxy) with the backend round trip
// stubbed out; "loopback" adds a real backend on 127.0.0.1.
func BenchmarkServeHTTP(b *testing.B) {
	prov := newBackend(b, "prov", nil)
	rules := benchRules(b)
	for _, bc := range []struct {
		name string
		stub bool
	}{{"stub", true}, {"loopback", false}} {
		b.Run(bc.name, func(b *testing.B) {
			h, _ := newHandler(b, Options{Services: []Service{
				{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}, Rules: rules},
			}})
			if bc.stub {
				h.exact["prov.example.com"].proxy.Transport = markTransport{stubTransport{}}
			}
			r := httptest.NewRequest("GET", "/app/provision/00aabbccddee.cfg", nil)
			r.Host = "prov.example.com"
			r.RemoteAddr = "192.0.2.1:5060"
			b.ReportAllocs()
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
