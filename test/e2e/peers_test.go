package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/testpki"
)

// echoReply is what an echo backend answers: who it is and what request it
// received from the gateway.
type echoReply struct {
	Backend string
	Method  string
	Path    string
	Host    string
	TLS     bool // the gateway spoke TLS to the backend
	Header  http.Header
}

// echoHandler answers every request with an echoReply as JSON.
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoReply{
			Backend: name, Method: r.Method, Path: r.URL.RequestURI(),
			Host: r.Host, TLS: r.TLS != nil, Header: r.Header,
		})
	})
}

// echoBackend starts a plain HTTP echo backend on loopback.
func echoBackend(t testing.TB, name string) *httptest.Server {
	srv := httptest.NewServer(echoHandler(name))
	t.Cleanup(srv.Close)
	return srv
}

// tlsEchoBackend starts an HTTPS echo backend and writes the CA file that
// verifies it (its certificate covers 127.0.0.1).
func tlsEchoBackend(t testing.TB, name string) (srv *httptest.Server, caFile string) {
	srv = httptest.NewTLSServer(echoHandler(name))
	t.Cleanup(srv.Close)
	pemCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	return srv, writeFile(t, t.TempDir(), "backend-ca.pem", string(pemCA))
}

// addrOf is the host:port of an httptest server.
func addrOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string { return freeAddr(t) }

// echo decodes the echo backend's answer in r, failing the test when the
// answer is not one.
func (r curlResult) echo(t testing.TB) echoReply {
	t.Helper()
	var e echoReply
	if err := json.Unmarshal([]byte(r.Body), &e); err != nil || e.Backend == "" {
		t.Fatalf("not an echo backend answer (status %d, curl exit %d, %s): %q", r.Status, r.Exit, r.Stderr, r.Body)
	}
	return e
}

// pki is a test CA and two server certificates it signed, as PEM files.
type pki struct {
	CA      string // CA certificate
	A, AKey string // a.example.test, *.wild.example.test, IP 127.0.0.1
	B, BKey string // b.example.test
	Pool    *x509.CertPool
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	ca := testpki.New(t, "pbxgate e2e test CA")
	p := &pki{CA: ca.WritePEM(t, dir, "ca.pem"), Pool: ca.Pool()}
	p.A, p.AKey = ca.WriteLeaf(t, dir, "a", "a.example.test", "a.example.test", "*.wild.example.test", "127.0.0.1")
	p.B, p.BKey = ca.WriteLeaf(t, dir, "b", "b.example.test", "b.example.test")
	return p
}

// slapd is the directory every LDAP test talks to through pbxgate.
const (
	slapdSuffix = "dc=example,dc=com"
	slapdAdmin  = "cn=admin,dc=example,dc=com"
	slapdPass   = "secret"
)

const slapdConf = `include /etc/ldap/schema/core.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {{.Dir}}/slapd.pid
database mdb
maxsize 10485760
suffix "dc=example,dc=com"
rootdn "cn=admin,dc=example,dc=com"
rootpw secret
directory {{.Dir}}/db
`

const slapdBase = `dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example
`

// startSlapd runs a real OpenLDAP slapd on a loopback port with an mdb
// database holding dc=example,dc=com, and returns its address. It is stopped
// at cleanup.
func startSlapd(t testing.TB) string {
	t.Helper()
	bin := needBinary(t, "slapd", "slapd")
	add := needBinary(t, "slapadd", "slapd")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := writeFile(t, dir, "slapd.conf", render(t, slapdConf, map[string]any{"Dir": dir}))
	ldif := writeFile(t, dir, "base.ldif", slapdBase)
	if out, _, code := run(t, cleanEnv(), add, "-f", conf, "-l", ldif); code != 0 {
		t.Fatalf("slapadd exit %d: %s", code, out)
	}
	addr := freeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-f", conf, "-h", "ldap://"+addr+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting slapd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-done:
			t.Fatalf("slapd exited: %s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd not accepting on %s within %v", addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
