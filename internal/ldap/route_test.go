package ldap

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
)

// routeProxy is a Proxy with a few domains and every policy target set.
func routeProxy(t testing.TB) *Proxy {
	t.Helper()
	dial := func(context.Context) (net.Conn, error) { return nil, errors.New("not dialed in this test") }
	target := func(name string) *Target { return &Target{Service: name, Dial: dial} }
	p, err := New(Options{
		Routes: map[string]Target{
			"corp.example.com": *target("corp"),
			"example":          *target("netbios"),
			"example.com":      *target("upn"),
		},
		Anonymous: target("anon"),
		SASL:      target("sasl"),
		StartTLS:  target("tls"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// routeCases are first messages and the service each is routed to ("" for
// a refusal).
var routeCases = []struct {
	name    string
	msg     []byte
	service string
	verdict verdict
}{
	{"dn", bindMsg(1, "CN=John Smith,OU=Sales,DC=Corp,DC=Example,DC=com", "pw"), "corp", routeTarget},
	{"dn-escaped", bindMsg(1, `cn=Smith\, John,dc=corp,dc=ex\61mple,dc="com"`, "pw"), "corp", routeTarget},
	{"downlevel", bindMsg(1, `EXAMPLE\bob`, "pw"), "netbios", routeTarget},
	{"upn", bindMsg(1, "alice@Example.COM", "pw"), "upn", routeTarget},
	{"unknown", bindMsg(1, "mallory@evil.test", "pw"), "", refuseDomain},
	{"anonymous", bindMsg(1, "", ""), "anon", routeTarget},
	{"sasl", envelope(1, bindOp(3, "", sasl("GSSAPI", "token"))), "sasl", routeTarget},
	{"starttls", envelope(1, extendedOp(startTLSOID)), "tls", routeTarget},
	{"search", envelope(1, searchOp("dc=example,dc=com")), "anon", routeTarget},
}

// routeDecision is exactly what ServeConn does to route a first message
// it has read: parse it, derive the domain, look it up.
func routeDecision(p *Proxy, msg []byte, buf *[maxDomainLen]byte) (Target, verdict, error) {
	req, name, err := parseRequest(msg)
	if err != nil {
		return Target{}, 0, err
	}
	t, v := p.decide(req, name, buf[:0])
	return t, v, nil
}

// The routing decision for a first message allocates nothing: not for the
// bind name (which stays in the message), the domain (derived into a stack
// buffer) or the map lookup. The message itself, as ReadMessage returns it,
// is the one allocation of sniff and route.
func TestRouteDecisionAllocs(t *testing.T) {
	p := routeProxy(t)
	for _, tc := range routeCases {
		t.Run(tc.name, func(t *testing.T) {
			var buf [maxDomainLen]byte
			got, v, err := routeDecision(p, tc.msg, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if v != tc.verdict || got.Service != tc.service {
				t.Fatalf("routed to %q (verdict %d), want %q (verdict %d)", got.Service, v, tc.service, tc.verdict)
			}
			if n := testing.AllocsPerRun(100, func() {
				if got, _, _ := routeDecision(p, tc.msg, &buf); got.Service != tc.service {
					panic("routed elsewhere")
				}
			}); n != 0 {
				t.Errorf("routing decision allocated %v times", n)
			}
			r := bytes.NewReader(tc.msg)
			if n := testing.AllocsPerRun(100, func() {
				r.Reset(tc.msg)
				msg, err := ReadMessage(r, DefaultMaxMessage)
				if err != nil {
					panic(err)
				}
				routeDecision(p, msg, &buf)
			}); n != 1 {
				t.Errorf("reading and routing allocated %v times, want 1 (the message)", n)
			}
		})
	}
}

// A domain longer than the stack buffer still routes (AppendDomain grows
// the buffer).
func TestRouteDecisionLongDomain(t *testing.T) {
	long := string(bytes.Repeat([]byte("a"), 300)) + ".example"
	p, err := New(Options{Routes: map[string]Target{long: {Service: "long", Dial: func(context.Context) (net.Conn, error) { return nil, nil }}}})
	if err != nil {
		t.Fatal(err)
	}
	var buf [maxDomainLen]byte
	got, v, err := routeDecision(p, bindMsg(1, "u@"+long, "pw"), &buf)
	if err != nil || v != routeTarget || got.Service != "long" {
		t.Fatalf("routed to %q (verdict %d, %v), want long", got.Service, v, err)
	}
}

func BenchmarkRouteDecision(b *testing.B) {
	p := routeProxy(b)
	for _, tc := range routeCases {
		if tc.name != "dn" && tc.name != "downlevel" && tc.name != "upn" {
			continue
		}
		b.Run(tc.name, func(b *testing.B) {
			var buf [maxDomainLen]byte
			b.ReportAllocs()
			for b.Loop() {
				if got, _, _ := routeDecision(p, tc.msg, &buf); got.Service != tc.service {
					b.Fatal("routed elsewhere")
				}
			}
		})
	}
}
