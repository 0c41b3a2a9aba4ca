package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

const reloadConfig = `data_dir: {{.DataDir}}
listeners:
  - name: web
    address: {{.Web}}
    protocols: [http]
  - name: dir
    address: {{.Dir}}
    protocols: [ldap]
services:
  - name: app
    protocol: http
    hosts: [app.example.test]
    backend: {address: {{.App}}}
{{- if .Extra}}
  - name: extra
    protocol: http
    hosts: [extra.example.test]
    backend: {address: {{.Extra}}}
{{- end}}
  - name: example
    protocol: ldap
    domains: [example.com]
    backend: {address: {{.Slapd}}}
`

// keepAlive is one HTTP/1.1 client connection used for several requests.
type keepAlive struct {
	c  net.Conn
	br *bufio.Reader
}

func newKeepAlive(t *testing.T, addr string) *keepAlive {
	return &keepAlive{c: dial(t, addr)}
}

// get sends one request on the connection and returns the status and, for
// a 200, the echo backend's reply.
func (k *keepAlive) get(t *testing.T, host, path string) (int, echoReply) {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(k.c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host); err != nil {
		t.Fatalf("keep-alive connection: write: %v", err)
	}
	if k.br == nil {
		k.br = bufio.NewReader(k.c)
	}
	resp, err := http.ReadResponse(k.br, nil)
	if err != nil {
		t.Fatalf("keep-alive connection: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("keep-alive connection: body: %v", err)
	}
	if resp.Close {
		t.Errorf("gateway announced it closes the keep-alive connection")
	}
	var e echoReply
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("not an echo reply: %q", body)
		}
	}
	return resp.StatusCode, e
}

// ldapSearchBase reads the base entry over an already bound connection.
func ldapSearchBase(t *testing.T, c *ldap.Conn) {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(slapdSuffix, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 10, false, "(objectClass=*)", nil, nil))
	if err != nil {
		t.Fatalf("search on the established LDAP connection: %v", err)
	}
	if len(res.Entries) != 1 || res.Entries[0].DN != slapdSuffix {
		t.Fatalf("search returned %d entries", len(res.Entries))
	}
}

func TestReload(t *testing.T) {
	t.Parallel()
	slapd := startSlapd(t)
	web, dir, dataDir := freeAddr(t), freeAddr(t), t.TempDir()
	oldApp, newApp := addrOf(echoBackend(t, "old")), addrOf(echoBackend(t, "new"))
	conf := func(app, extra string) string {
		return render(t, reloadConfig, map[string]any{
			"DataDir": dataDir, "Web": web, "Dir": dir, "Slapd": slapd, "App": app, "Extra": extra,
		})
	}
	g := startGateway(t, conf(oldApp, ""))

	ka := newKeepAlive(t, web)
	if status, e := ka.get(t, "app.example.test", "/1"); status != 200 || e.Backend != "old" {
		t.Fatalf("before reload: status %d backend %q, want 200 old", status, e.Backend)
	}
	if r := curlHost(t, "http", "extra.example.test", web, "/"); r.Status != 404 {
		t.Fatalf("before reload extra.example.test: status %d, want 404", r.Status)
	}
	lc, err := ldap.DialURL("ldap://"+dir, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("LDAP dial: %v", err)
	}
	defer lc.Close()
	lc.SetTimeout(10 * time.Second)
	if err := lc.Bind(slapdAdmin, slapdPass); err != nil {
		t.Fatalf("LDAP bind through the gateway: %v", err)
	}
	ldapSearchBase(t, lc)

	t.Run("new routes take effect", func(t *testing.T) {
		g.reload(conf(newApp, newApp))
		g.waitLogContains("configuration reloaded")
		r := curlHost(t, "http", "app.example.test", web, "/2")
		if r.Status != 200 || r.echo(t).Backend != "new" {
			t.Errorf("after reload app.example.test: status %d body %s, want backend new", r.Status, r.Body)
		}
		r = curlHost(t, "http", "extra.example.test", web, "/")
		if r.Status != 200 || r.echo(t).Backend != "new" {
			t.Errorf("after reload extra.example.test: status %d body %s, want backend new", r.Status, r.Body)
		}
	})

	t.Run("established connections survive", func(t *testing.T) {
		status, e := ka.get(t, "app.example.test", "/3")
		if status != 200 {
			t.Fatalf("keep-alive request after reload: status %d", status)
		}
		t.Logf("keep-alive request after reload answered by %s", e.Backend)
		ldapSearchBase(t, lc)
	})

	t.Run("invalid config refused", func(t *testing.T) {
		g.reload(render(t, badConfig, nil))
		g.waitLogContains("reload refused")
		r := curlHost(t, "http", "extra.example.test", web, "/")
		if r.Status != 200 || r.echo(t).Backend != "new" {
			t.Errorf("after a refused reload: status %d %s, want the previous config serving", r.Status, r.Body)
		}
		if status, _ := ka.get(t, "app.example.test", "/4"); status != 200 {
			t.Errorf("keep-alive request after a refused reload: status %d", status)
		}
		ldapSearchBase(t, lc)
	})
}

func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case started <- struct{}{}:
		default:
		}
		time.Sleep(500 * time.Millisecond) // the in-flight request SIGTERM must wait for
		echoHandler("slow").ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	web := freeAddr(t)
	g := startGateway(t, render(t, `data_dir: {{.DataDir}}
listeners:
  - {name: web, address: "{{.Web}}", protocols: [http], default_service: slow}
services:
  - {name: slow, protocol: http, hosts: [slow.example.test], backend: {address: "{{.Slow}}"}}
`, map[string]any{"Web": web, "Slow": addrOf(slow)}))

	res := make(chan curlResult, 1)
	go func() { res <- curl(t, "http://"+web+"/slow") }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the request never reached the backend")
	}
	g.signal(syscall.SIGTERM)
	select {
	case r := <-res:
		if r.Status != 200 || r.echo(t).Backend != "slow" {
			t.Errorf("in-flight request cut by SIGTERM: curl exit %d status %d %s", r.Exit, r.Status, r.Stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("in-flight request never completed")
	}
	if code := g.waitExit(stopTimeout); code != 0 {
		t.Errorf("exit code %d after draining, want 0", code)
	}
}
