package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func origin(t *testing.T, name string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

func parse(t *testing.T, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if cfg.Admin.Address == config.DefaultAdminAddress {
		cfg.Admin.Address = "127.0.0.1:0" // tests run beside other pbxgates
	}
	return cfg
}

func webConfig(dataDir, addr, hostBackend string, extra string) string {
	return fmt.Sprintf(`data_dir: %s
listeners:
  - name: web
    address: %s
    protocols: [http]
services:
  - name: app
    protocol: http
    hosts: [app.test]
    backend: {address: %q}
%s`, dataDir, addr, hostBackend, extra)
}

func get(t *testing.T, addr, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s via %s: %v", host, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func start(t *testing.T, cfg *config.Config, rec *event.Recorder) *Gateway {
	t.Helper()
	g, err := New(cfg, Options{Log: slog.New(slog.DiscardHandler), Events: rec})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return g
}

func TestReloadThatCannotOpenItsSocketKeepsOldConfig(t *testing.T) {
	dir := t.TempDir()
	a, b := origin(t, "A"), origin(t, "B")
	rec := &event.Recorder{}
	g := start(t, parse(t, webConfig(dir, "127.0.0.1:0", a, "")), rec)
	addr := g.Addr("web").String()

	if code, body := get(t, addr, "app.test"); code != 200 || body != "A" {
		t.Fatalf("before reload: %d %q, want 200 A", code, body)
	}
	if code, _ := get(t, addr, "other.test"); code != 404 {
		t.Fatalf("unknown host: %d, want 404", code)
	}

	// The same listener address (":0" would pick a new port, so pin the
	// bound one) with a second service: the socket is kept.
	next := parse(t, webConfig(dir, addr, a, fmt.Sprintf(`  - name: other
    protocol: http
    hosts: [other.test]
    backend: {address: %q}
`, b)))
	// The listener's configured address changed from :0 to the bound
	// address, so it is reopened — on the same port, which is busy.
	if err := g.Reload(next); err == nil {
		t.Fatalf("reload onto a busy address succeeded")
	}
	if code, body := get(t, addr, "app.test"); code != 200 || body != "A" {
		t.Fatalf("after refused reload: %d %q, want the old routes", code, body)
	}
}

func TestReloadKeepsListenerAndConnections(t *testing.T) {
	dir := t.TempDir()
	a, b := origin(t, "A"), origin(t, "B")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g := start(t, parse(t, webConfig(dir, addr, a, "")), &event.Recorder{})

	keep, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Close()

	if err := g.Reload(parse(t, webConfig(dir, addr, b, ""))); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if code, body := get(t, addr, "app.test"); code != 200 || body != "B" {
		t.Fatalf("after reload: %d %q, want 200 B", code, body)
	}
	// The connection opened before the reload still works (same socket).
	keep.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(keep, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	reply, _ := io.ReadAll(keep)
	if !strings.HasPrefix(string(reply), "HTTP/1.1 200") || !strings.HasSuffix(string(reply), "B") {
		t.Fatalf("connection from before the reload: %q", reply)
	}

	// A runtime that cannot be built (missing certificate) is refused and
	// the running one stays.
	bad := parse(t, webConfig(dir, addr, a, "")+`tls:
  certificates:
    - {cert: /nonexistent/x.crt, key: /nonexistent/x.key}
`)
	if err := g.Reload(bad); err == nil || !strings.Contains(err.Error(), "/nonexistent/x.crt") {
		t.Fatalf("reload with a missing certificate: %v, want an error naming the file", err)
	}
	if code, body := get(t, addr, "app.test"); code != 200 || body != "B" {
		t.Fatalf("after refused reload: %d %q, want 200 B", code, body)
	}
}

func TestCheckWritesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := parse(t, fmt.Sprintf(`data_dir: %s
listeners:
  - name: tls
    address: 127.0.0.1:0
    tls: required
    protocols: [http]
services:
  - name: app
    protocol: http
    hosts: [app.test]
    backend: {address: "127.0.0.1:1"}
`, dir))
	warnings, err := Check(cfg)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !strings.Contains(strings.Join(warnings, "\n"), "self-signed") {
		t.Errorf("warnings %q do not mention the self-signed certificate", warnings)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Check created %s (err %v)", dir, err)
	}
}

func TestTCPForwarding(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	dir := t.TempDir()
	cfg := parse(t, fmt.Sprintf(`data_dir: %s
listeners:
  - name: raw
    address: 127.0.0.1:0
    protocols: [tcp]
    tcp_service: echo
services:
  - name: echo
    protocol: tcp
    backend: {address: %q}
`, dir, echo.Addr().String()))
	g := start(t, cfg, &event.Recorder{})
	c, err := net.Dial("tcp", g.Addr("raw").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := "\x00\x01 not any protocol, forwarded as is"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != msg {
		t.Fatalf("echo through the tcp listener: %q, %v; want %q", got, err, msg)
	}
}

func TestReloadRemovesListener(t *testing.T) {
	dir := t.TempDir()
	a := origin(t, "A")
	two := fmt.Sprintf(`data_dir: %s
listeners:
  - name: web
    address: 127.0.0.1:0
    protocols: [http]
  - name: extra
    address: 127.0.0.1:0
    protocols: [http]
services:
  - name: app
    protocol: http
    hosts: [app.test]
    backend: {address: %q}
`, dir, a)
	g := start(t, parse(t, two), &event.Recorder{})
	extra := g.Addr("extra").String()
	if code, _ := get(t, extra, "app.test"); code != 200 {
		t.Fatalf("extra listener before reload: %d", code)
	}
	// "web" keeps its configured address, so only "extra" goes.
	one := parse(t, webConfig(dir, "127.0.0.1:0", a, ""))
	if err := g.Reload(one); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if g.Addr("extra") != nil {
		t.Fatal("removed listener still known")
	}
	// The port may be handed to a parallel test as soon as it is free, so
	// "still ours" means it still routes to our origin.
	deadline := time.Now().Add(5 * time.Second)
	for stillOurs(extra) {
		if time.Now().After(deadline) {
			t.Fatal("removed listener still serves")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stillOurs reports whether addr answers app.test with origin "A".
func stillOurs(addr string) bool {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = "app.test"
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == 200 && string(b) == "A"
}

// rawOrigin answers every request with a status line of its own ("200
// Fine") and a header name in odd case, which only the lean HTTP/1.1
// path passes on as it is (net/http writes "200 OK" and canonical names).
func rawOrigin(t *testing.T) string {
	return tcpBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			if _, err := io.WriteString(c, "HTTP/1.1 200 Fine\r\nx-lean-CASE: 1\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
}

// TestHTTPTakesTheLeanPath: plain HTTP/1.1 requests are served by the lean
// path (issue 2's throughput depends on it), also on a listener that
// carries SIP over WebSocket beside HTTP, whose upgrades go to net/http.
func TestHTTPTakesTheLeanPath(t *testing.T) {
	g := start(t, parse(t, fmt.Sprintf(`data_dir: %s
listeners:
  - {name: web, address: "127.0.0.1:0", protocols: [http]}
  - {name: web-ws, address: "127.0.0.1:0", protocols: [http, sip-ws]}
services:
  - {name: app, protocol: http, hosts: [app.test], backend: {address: %q}}
  - {name: pbx, protocol: sip, domains: [pbx.test], backend: {address: "127.0.0.1:9", websocket: "ws://127.0.0.1:9/"}}
`, t.TempDir(), rawOrigin(t))), &event.Recorder{})
	for _, l := range []string{"web", "web-ws"} {
		c, err := net.Dial("tcp", g.Addr(l).String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 512)
		n, _ := io.ReadAtLeast(c, b, 20)
		head := string(b[:n])
		if !strings.HasPrefix(head, "HTTP/1.1 200 Fine\r\n") || !strings.Contains(head, "\r\nx-lean-CASE: 1\r\n") {
			t.Errorf("listener %s answered through net/http, not the lean path:\n%s", l, head)
		}
	}
}
