package ldap

import (
	"bufio"
	"crypto/tls"
	"net"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/goleak"
)

// capture runs do with a go-ldap client against a loopback listener that
// records the client's first message and then hangs up.
func capture(t *testing.T, do func(*goldap.Conn) error) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		msg, _ := ReadMessage(bufio.NewReader(c), 0)
		got <- msg
	}()
	l, err := goldap.DialURL("ldap://" + ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(5 * time.Second)
	if err := do(l); err == nil {
		t.Error("the client saw no error from a server that hangs up")
	}
	l.Close()
	msg := <-got
	if msg == nil {
		t.Fatal("no message captured")
	}
	return msg
}

// Requests as the go-ldap client really sends them.
func TestParseRequestFromGoLDAP(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tests := []struct {
		name string
		do   func(*goldap.Conn) error
		want Request
	}{
		{"simple bind DN", func(l *goldap.Conn) error { return l.Bind("cn=admin,dc=example,dc=com", "secret") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Name: "cn=admin,dc=example,dc=com", Auth: AuthSimple}},
		{"simple bind down-level", func(l *goldap.Conn) error { return l.Bind(`EXAMPLE\bob`, "pw") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Name: `EXAMPLE\bob`, Auth: AuthSimple}},
		{"anonymous", func(l *goldap.Conn) error { return l.UnauthenticatedBind("") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSimple, Anonymous: true}},
		{"unauthenticated", func(l *goldap.Conn) error { return l.UnauthenticatedBind("bob@example.com") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Name: "bob@example.com", Auth: AuthSimple}},
		{"SASL EXTERNAL", func(l *goldap.Conn) error { return l.ExternalBind() },
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "EXTERNAL"}},
		{"SASL DIGEST-MD5", func(l *goldap.Conn) error { return l.MD5Bind("example.com", "bob", "pw") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "DIGEST-MD5"}},
		{"NTLM (sicily)", func(l *goldap.Conn) error { return l.NTLMBind("EXAMPLE", "bob", "pw") },
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "sicilyNegotiate"}},
		{"StartTLS", func(l *goldap.Conn) error { return l.StartTLS(&tls.Config{InsecureSkipVerify: true}) },
			Request{MessageID: 1, Op: OpStartTLS, Tag: 23}},
		{"search without bind", func(l *goldap.Conn) error {
			_, err := l.Search(goldap.NewSearchRequest("dc=example,dc=com", goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil))
			return err
		}, Request{MessageID: 1, Op: OpOther, Tag: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := capture(t, tt.do)
			got, err := ParseRequest(msg)
			if err != nil {
				t.Fatalf("ParseRequest(%x): %v", msg, err)
			}
			if got != tt.want {
				t.Errorf("ParseRequest = %+v, want %+v", got, tt.want)
			}
			if long, err := ParseRequest(longForm(t, msg)); err != nil || long != got {
				t.Errorf("long-form variant = %+v, %v", long, err)
			}
		})
	}
}
