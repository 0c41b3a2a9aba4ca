package ldap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/ldap"
	"github.com/pbxgate/pbxgate/internal/testpki"
)

// needBinary finds an external program the test needs, or fails naming the
// Debian package that provides it.
func needBinary(t *testing.T, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	t.Fatalf("needs %s (apt-get install -y %s)", name, pkg)
	return ""
}

// slapd is a real OpenLDAP server on loopback with suffix dc=example,dc=com
// and rootdn cn=admin,dc=example,dc=com / secret.
type slapd struct {
	addr string
	stop func()
}

func startSlapd(t *testing.T, withTLS bool) *slapd {
	t.Helper()
	slapdBin := needBinary(t, "slapd", "slapd")
	slapadd := needBinary(t, "slapadd", "slapd")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "include /etc/ldap/schema/core.schema\npidfile %s/slapd.pid\nargsfile %s/slapd.args\n", dir, dir)
	if out, _ := exec.Command(slapdBin, "-VVV").CombinedOutput(); !bytes.Contains(out, []byte("    mdb")) {
		conf.WriteString("modulepath /usr/lib/ldap\nmoduleload back_mdb\n")
	}
	if withTLS {
		cert, key := testpki.New(t, "slapd test CA").WriteLeaf(t, dir, "slapd", "127.0.0.1", "127.0.0.1", "localhost")
		fmt.Fprintf(&conf, "TLSCertificateFile %s\nTLSCertificateKeyFile %s\n", cert, key)
	}
	fmt.Fprintf(&conf, "database mdb\nmaxsize 10485760\nsuffix \"dc=example,dc=com\"\nrootdn \"cn=admin,dc=example,dc=com\"\nrootpw secret\ndirectory %s/db\n", dir)
	confPath := filepath.Join(dir, "slapd.conf")
	ldif := filepath.Join(dir, "base.ldif")
	mustWrite(t, confPath, conf.String())
	mustWrite(t, ldif, "dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n")
	if out, err := exec.Command(slapadd, "-f", confPath, "-l", ldif).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}

	addr := closedPort(t)
	var out bytes.Buffer
	cmd := exec.Command(slapdBin, "-h", "ldap://"+addr+"/", "-f", confPath, "-d", "0")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting slapd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	// Wait for the port: slapd gives no readiness signal on this path.
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return &slapd{addr: addr, stop: stop}
		}
		select {
		case err := <-exited:
			t.Fatalf("slapd exited: %v\n%s", err, out.String())
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("slapd did not listen on %s: %s", addr, out.String())
		}
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// ldapsearch runs the OpenLDAP client and returns its exit code and output.
func ldapsearch(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := needBinary(t, "ldapsearch", "ldap-utils")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-o", "ldif_wrap=no"}, args...)...)
	cmd.Env = append(os.Environ(), "LDAPTLS_REQCERT=never")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("ldapsearch: %v\n%s", err, out)
	return -1, ""
}

func TestSlapdThroughProxy(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	srv := startSlapd(t, true)
	defer srv.stop()
	target := ldap.Target{Service: "slapd", Dial: dialTo(srv.addr)}
	routes := map[string]ldap.Target{"example.com": target}

	run := func(t *testing.T, opts ldap.Options, args ...string) (int, string, []event.Event) {
		t.Helper()
		rec := &event.Recorder{}
		opts.Listener, opts.Routes, opts.Events, opts.Now = "ldap-test", routes, rec, func() time.Time { return testNow }
		addr, stop := startProxy(t, opts)
		code, out := ldapsearch(t, append([]string{"-x", "-H", "ldap://" + addr, "-b", "dc=example,dc=com"}, args...)...)
		stop() // waits for the connection, so every event is in
		return code, out, rec.Events()
	}
	wantOne := func(t *testing.T, events []event.Event, kind event.Kind, reason, user string) {
		t.Helper()
		if len(events) != 1 || events[0].Kind != kind || events[0].Reason != reason || events[0].User != user || events[0].Proto != "ldap" {
			t.Fatalf("events %+v, want one %v %s for %q", events, kind, reason, user)
		}
	}

	t.Run("bind and search", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{}, "-D", "cn=admin,dc=example,dc=com", "-w", "secret")
		if code != 0 || !strings.Contains(out, "dn: dc=example,dc=com") {
			t.Fatalf("ldapsearch exit %d:\n%s", code, out)
		}
		wantOne(t, events, event.Success, event.ReasonOK, "admin")
		if events[0].Service != "slapd" {
			t.Fatalf("service %q", events[0].Service)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{}, "-D", "cn=admin,dc=example,dc=com", "-w", "wrong")
		if code != 49 {
			t.Fatalf("ldapsearch exit %d, want 49:\n%s", code, out)
		}
		wantOne(t, events, event.RejectedByService, event.ReasonInvalidCreds, "admin")
	})
	t.Run("unknown domain", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{}, "-D", "cn=admin,dc=other,dc=org", "-w", "secret")
		if code != 49 {
			t.Fatalf("ldapsearch exit %d, want 49:\n%s", code, out)
		}
		wantOne(t, events, event.RejectedByGateway, event.ReasonUnknownDomain, "admin")
	})
	t.Run("anonymous refused", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{})
		if code != 48 {
			t.Fatalf("ldapsearch exit %d, want 48:\n%s", code, out)
		}
		wantOne(t, events, event.RejectedByGateway, event.ReasonBindRefused, "")
	})
	t.Run("anonymous routed", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{Anonymous: &target})
		if code != 0 || !strings.Contains(out, "dn: dc=example,dc=com") {
			t.Fatalf("ldapsearch exit %d:\n%s", code, out)
		}
		wantOne(t, events, event.Success, event.ReasonOK, "")
	})
	t.Run("StartTLS refused", func(t *testing.T) {
		code, out, events := run(t, ldap.Options{}, "-ZZ", "-D", "cn=admin,dc=example,dc=com", "-w", "secret")
		if code == 0 || !strings.Contains(out, "ldap_start_tls: Protocol error (2)") {
			t.Fatalf("ldapsearch exit %d, want a StartTLS failure:\n%s", code, out)
		}
		wantOne(t, events, event.RejectedByGateway, event.ReasonBindRefused, "")
	})
	t.Run("StartTLS relayed", func(t *testing.T) {
		// After StartTLS the relay is opaque: the search works end to end and
		// the encrypted bind is not seen.
		code, out, events := run(t, ldap.Options{StartTLS: &target}, "-ZZ", "-D", "cn=admin,dc=example,dc=com", "-w", "secret")
		if code != 0 || !strings.Contains(out, "dn: dc=example,dc=com") {
			t.Fatalf("ldapsearch exit %d:\n%s", code, out)
		}
		if len(events) != 0 {
			t.Fatalf("events %+v from an encrypted session", events)
		}
	})
}

// The bind forms slapd cannot take, with the OpenLDAP client against the
// demo directory.
func TestLdapsearchBindForms(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tt := range []struct{ name, pw, user string }{
		{`EXAMPLE\bob`, "bob-pw", "bob"},
		{"alice@example.com", "alice-pw", "alice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			code, out := ldapsearch(t, "-x", "-H", "ldap://"+h.addr, "-D", tt.name, "-w", tt.pw, "-b", "dc=example,dc=com")
			h.stop()
			if code != 0 || !strings.Contains(out, "bound as "+tt.name) {
				t.Fatalf("ldapsearch exit %d:\n%s", code, out)
			}
			h.wantEvents(t, event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "dir", User: tt.user})
		})
	}
}
