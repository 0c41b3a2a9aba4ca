package demo

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/ldap"
)

var ldapTestUsers = map[string]string{
	"cn=carol,ou=people,dc=demo,dc=test": "carol-secret",
	"alice@demo.test":                    "alice-secret",
	`DEMO\bob`:                           "bob-secret",
}

// startLDAPDemo runs ServeLDAP on loopback; stop cancels it and checks that
// it returned nil.
func startLDAPDemo(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeLDAP(ctx, ln, ldapTestUsers, nil) }()
	return ln.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeLDAP: %v", err)
		}
	}
}

func ldapDial(t *testing.T, addr string) *goldap.Conn {
	t.Helper()
	l, err := goldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(10 * time.Second)
	return l
}

func TestServeLDAPBind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, stop := startLDAPDemo(t)
	defer stop()
	tests := []struct {
		name, pw string
		code     uint16 // 0 = success
	}{
		{"cn=carol,ou=people,dc=demo,dc=test", "carol-secret", 0},
		{"CN=Carol,OU=People,DC=demo,DC=test", "carol-secret", 0},
		{"alice@demo.test", "alice-secret", 0},
		{`DEMO\bob`, "bob-secret", 0},
		{"alice@demo.test", "wrong", goldap.LDAPResultInvalidCredentials},
		{"nobody@demo.test", "x", goldap.LDAPResultInvalidCredentials},
		{"alice@demo.test", "", goldap.LDAPResultInvalidCredentials}, // unauthenticated bind
		{"", "", 0}, // anonymous
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.pw, func(t *testing.T) {
			l := ldapDial(t, addr)
			defer l.Close()
			_, err := l.SimpleBind(&goldap.SimpleBindRequest{Username: tt.name, Password: tt.pw, AllowEmptyPassword: true})
			if tt.code == 0 {
				if err != nil {
					t.Fatalf("bind: %v", err)
				}
				return
			}
			if !goldap.IsErrorWithCode(err, tt.code) {
				t.Fatalf("bind error %v, want code %d", err, tt.code)
			}
		})
	}
	t.Run("SASL", func(t *testing.T) {
		l := ldapDial(t, addr)
		defer l.Close()
		if err := l.ExternalBind(); !goldap.IsErrorWithCode(err, goldap.LDAPResultAuthMethodNotSupported) {
			t.Fatalf("SASL bind: %v", err)
		}
	})
}

func TestServeLDAPSearch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, stop := startLDAPDemo(t)
	defer stop()
	l := ldapDial(t, addr)
	defer l.Close()
	search := func() *goldap.SearchResult {
		t.Helper()
		res, err := l.Search(goldap.NewSearchRequest("dc=demo,dc=test", goldap.ScopeWholeSubtree, goldap.NeverDerefAliases,
			0, 0, false, "(objectClass=*)", nil, nil))
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		if len(res.Entries) != 1 || res.Entries[0].DN != "dc=demo,dc=test" {
			t.Fatalf("entries %+v", res.Entries)
		}
		return res
	}
	if d := search().Entries[0].GetAttributeValue("description"); !strings.Contains(d, "bound as anonymous") {
		t.Fatalf("description %q", d)
	}
	if err := l.Bind("alice@demo.test", "alice-secret"); err != nil {
		t.Fatal(err)
	}
	if d := search().Entries[0].GetAttributeValue("description"); !strings.Contains(d, "bound as alice@demo.test") {
		t.Fatalf("description %q", d)
	}
	if err := l.Del(goldap.NewDelRequest("dc=demo,dc=test", nil)); !goldap.IsErrorWithCode(err, goldap.LDAPResultUnwillingToPerform) {
		t.Fatalf("delete: %v", err)
	}
	if _, err := l.WhoAmI(nil); !goldap.IsErrorWithCode(err, goldap.LDAPResultProtocolError) {
		t.Fatalf("extended operation: %v", err)
	}
}

// rawLDAP sends in and returns everything the demo answers until it closes.
func rawLDAP(t *testing.T, addr string, in []byte) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(in); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(c)
}

func ldapMessage(id int64, op *ber.Packet) []byte {
	m := ber.NewSequence("LDAPMessage")
	m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	m.AppendChild(op)
	return m.Bytes()
}

func TestServeLDAPClosing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, stop := startLDAPDemo(t)
	defer stop()
	bind := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "BindRequest")
	bind.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "version"))
	bind.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "alice@demo.test", "name"))
	bind.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "alice-secret", "password"))
	unbind := ber.Encode(ber.ClassApplication, ber.TypePrimitive, 2, nil, "UnbindRequest")

	t.Run("unbind closes", func(t *testing.T) {
		// Without the half-close the only way to see EOF is the demo closing.
		out, err := rawLDAP(t, addr, append(ldapMessage(1, bind), ldapMessage(2, unbind)...))
		if err != nil {
			t.Fatalf("reading: %v (the demo did not close after the unbind)", err)
		}
		msg, err := ldap.ReadMessage(strings.NewReader(string(out)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := ldap.ParseResponse(msg); err != nil || !resp.IsBind || resp.ResultCode != 0 || len(msg) != len(out) {
			t.Fatalf("answer %x: %+v %v", out, resp, err)
		}
	})
	t.Run("oversize request closes", func(t *testing.T) {
		out, err := rawLDAP(t, addr, []byte{0x30, 0x84, 0x00, 0x10, 0x00, 0x00, 0x02, 0x01, 0x01})
		if err != nil || len(out) != 0 {
			t.Fatalf("answer %x, %v; want a silent close", out, err)
		}
	})
	t.Run("garbage closes", func(t *testing.T) {
		out, err := rawLDAP(t, addr, []byte("GET / HTTP/1.0\r\n\r\n"))
		if err != nil || len(out) != 0 {
			t.Fatalf("answer %x, %v; want a silent close", out, err)
		}
	})
}

func TestServeLDAPStopsConnections(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	addr, stop := startLDAPDemo(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An open, idle connection does not keep ServeLDAP from returning.
	r := bufio.NewReader(c)
	bind := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "BindRequest")
	bind.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "version"))
	bind.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "name"))
	bind.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "", "password"))
	if _, err := c.Write(ldapMessage(1, bind)); err != nil {
		t.Fatal(err)
	}
	if _, err := ldap.ReadMessage(r, 0); err != nil { // the demo has read the request
		t.Fatal(err)
	}
	stop()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("read after stop: %v, want EOF", err)
	}
}

func TestServeLDAPWithLdapsearch(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	bin, err := exec.LookPath("ldapsearch")
	if err != nil {
		t.Fatalf("needs ldapsearch (apt-get install -y ldap-utils)")
	}
	addr, stop := startLDAPDemo(t)
	defer stop()
	for _, tt := range []struct {
		name, pw string
		exit     int
	}{
		{`DEMO\bob`, "bob-secret", 0},
		{"cn=carol,ou=people,dc=demo,dc=test", "carol-secret", 0},
		{"alice@demo.test", "wrong", 49},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "-x", "-o", "ldif_wrap=no", "-H", "ldap://"+addr, "-D", tt.name, "-w", tt.pw, "-b", "dc=demo,dc=test")
			cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
			out, err := cmd.CombinedOutput()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.exit {
				t.Fatalf("ldapsearch exit %d, want %d:\n%s", code, tt.exit, out)
			}
			if tt.exit == 0 && !strings.Contains(string(out), "bound as "+tt.name) {
				t.Fatalf("output:\n%s", out)
			}
		})
	}
}
