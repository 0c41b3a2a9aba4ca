package ldap_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/demo"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/ldap"
)

var testNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testUsers are the accounts of the demo directory behind the proxy.
var testUsers = map[string]string{
	"cn=admin,dc=example,dc=com": "secret",
	"alice@example.com":          "alice-pw",
	`EXAMPLE\bob`:                "bob-pw",
}

// harness runs demo.ServeLDAP as backend "dir" (routed for example.com and
// example) behind a Proxy on loopback.
type harness struct {
	addr    string // proxy address
	backend string // backend address
	rec     *event.Recorder
	stop    func()
}

func dialTo(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startProxy serves opts on a loopback listener; the returned stop ends it
// and waits.
func startProxy(t *testing.T, opts ldap.Options) (string, func()) {
	t.Helper()
	p, err := ldap.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	return ln.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

// startDemo runs the demo directory; the returned stop ends it and waits.
func startDemo(t *testing.T) (string, func()) {
	t.Helper()
	ln := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- demo.ServeLDAP(ctx, ln, testUsers, nil) }()
	return ln.Addr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeLDAP: %v", err)
		}
	}
}

func newHarness(t *testing.T, mod func(o *ldap.Options, backend ldap.Target)) *harness {
	t.Helper()
	h := &harness{rec: &event.Recorder{}}
	var stopDemo func()
	h.backend, stopDemo = startDemo(t)
	dir := ldap.Target{Service: "dir", Dial: dialTo(h.backend)}
	dead := ldap.Target{Service: "dead", Dial: dialTo(closedPort(t))}
	opts := ldap.Options{
		Listener: "ldap-test",
		Routes:   map[string]ldap.Target{"example.com": dir, "example": dir, "dead.example": dead},
		Events:   h.rec,
		Now:      func() time.Time { return testNow },
	}
	if mod != nil {
		mod(&opts, dir)
	}
	var stopProxy func()
	h.addr, stopProxy = startProxy(t, opts)
	h.stop = func() {
		stopProxy()
		stopDemo()
	}
	return h
}

func (h *harness) client(t *testing.T) *goldap.Conn {
	t.Helper()
	l, err := goldap.DialURL("ldap://" + h.addr)
	if err != nil {
		t.Fatal(err)
	}
	l.SetTimeout(10 * time.Second)
	return l
}

// wantEvents checks the recorded events against want, comparing the fields
// set in want (Time, Source, Listener and Proto are always checked).
func (h *harness) wantEvents(t *testing.T, want ...event.Event) {
	t.Helper()
	got := h.rec.Events()
	if len(got) != len(want) {
		t.Fatalf("got %d events %+v, want %d %+v", len(got), got, len(want), want)
	}
	for i, w := range want {
		g := got[i]
		if g.Time != testNow || g.Source != netip.MustParseAddr("127.0.0.1") || g.Listener != "ldap-test" || g.Proto != "ldap" {
			t.Errorf("event %d: common fields wrong: %+v", i, g)
		}
		if g.Kind != w.Kind || g.Reason != w.Reason || g.Service != w.Service || g.User != w.User {
			t.Errorf("event %d = %+v, want kind %v reason %q service %q user %q", i, g, w.Kind, w.Reason, w.Service, w.User)
		}
		if w.Detail != "" && !strings.Contains(g.Detail, w.Detail) {
			t.Errorf("event %d detail %q, want it to contain %q", i, g.Detail, w.Detail)
		}
	}
}

func wantCode(t *testing.T, err error, code uint16) {
	t.Helper()
	if !goldap.IsErrorWithCode(err, code) {
		t.Fatalf("error %v, want LDAP result code %d", err, code)
	}
}

func searchBase(t *testing.T, l *goldap.Conn) (*goldap.SearchResult, error) {
	t.Helper()
	return l.Search(goldap.NewSearchRequest("dc=example,dc=com", goldap.ScopeBaseObject, goldap.NeverDerefAliases,
		0, 0, false, "(objectClass=*)", nil, nil))
}

func TestProxyBindSuccess(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, tt := range []struct{ name, pw, user string }{
		{"cn=admin,dc=example,dc=com", "secret", "admin"},
		{"alice@example.com", "alice-pw", "alice"},
		{`EXAMPLE\bob`, "bob-pw", "bob"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			defer h.stop()
			l := h.client(t)
			defer l.Close()
			if err := l.Bind(tt.name, tt.pw); err != nil {
				t.Fatalf("Bind: %v", err)
			}
			h.wantEvents(t, event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "dir", User: tt.user})
			// The connection keeps relaying after the bind.
			res, err := searchBase(t, l)
			if err != nil {
				t.Fatalf("Search: %v", err)
			}
			if len(res.Entries) != 1 || !strings.Contains(res.Entries[0].GetAttributeValue("description"), "bound as "+tt.name) {
				t.Fatalf("search result %+v", res.Entries)
			}
		})
	}
}

func TestProxyWrongPassword(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, nil)
	defer h.stop()
	l := h.client(t)
	defer l.Close()
	wantCode(t, l.Bind("alice@example.com", "wrong"), goldap.LDAPResultInvalidCredentials)
	h.wantEvents(t, event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "dir", User: "alice", Detail: "resultCode 49"})

	// Later binds on the same connection are watched too.
	wantCode(t, l.Bind(`EXAMPLE\bob`, "wrong"), goldap.LDAPResultInvalidCredentials)
	if err := l.Bind(`EXAMPLE\bob`, "bob-pw"); err != nil {
		t.Fatal(err)
	}
	h.wantEvents(t,
		event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "dir", User: "alice"},
		event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "dir", User: "bob"},
		event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "dir", User: "bob"},
	)
}

func TestProxyUnknownDomain(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("refused", func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.stop()
		for _, name := range []string{"mallory@other.org", "admin", "cn=admin,o=nodc"} {
			l := h.client(t)
			wantCode(t, l.Bind(name, "pw"), goldap.LDAPResultInvalidCredentials)
			l.Close()
		}
		h.wantEvents(t,
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonUnknownDomain, User: "mallory", Detail: `domain "other.org"`},
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonUnknownDomain, User: "admin", Detail: `domain ""`},
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonUnknownDomain, User: "admin"},
		)
	})
	t.Run("default target", func(t *testing.T) {
		h := newHarness(t, func(o *ldap.Options, dir ldap.Target) {
			dir.Service = "fallback"
			o.Default = &dir
		})
		defer h.stop()
		l := h.client(t)
		defer l.Close()
		wantCode(t, l.Bind("mallory@other.org", "pw"), goldap.LDAPResultInvalidCredentials)
		h.wantEvents(t, event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "fallback", User: "mallory"})
	})
}

func TestProxyDeadBackend(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, nil)
	defer h.stop()
	l := h.client(t)
	defer l.Close()
	wantCode(t, l.Bind("bob@dead.example", "pw"), goldap.LDAPResultUnavailable)
	h.wantEvents(t, event.Event{Kind: event.BackendUnreachable, Reason: event.ReasonDial, Service: "dead", User: "bob", Detail: "refused"})
}

// rawExchange writes in to the proxy, half-closes and returns all it answers.
func rawExchange(t *testing.T, addr string, in []byte) []byte {
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
	c.(*net.TCPConn).CloseWrite()
	out, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return out
}

// responses splits a stream into parsed LDAP responses.
func responses(t *testing.T, b []byte) []ldap.Response {
	t.Helper()
	var out []ldap.Response
	r := bytes.NewReader(b)
	for range 1000 {
		msg, err := ldap.ReadMessage(r, 1<<20)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("answer %x: %v", b, err)
		}
		resp, err := ldap.ParseResponse(msg)
		if err != nil {
			t.Fatalf("answer %x: %v", msg, err)
		}
		out = append(out, resp)
	}
	t.Fatal("too many responses")
	return nil
}

func TestProxyGarbage(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, func(o *ldap.Options, _ ldap.Target) { o.MaxMessage = 1024 })
	defer h.stop()
	tests := []struct {
		name   string
		in     []byte
		detail string
	}{
		{"HTTP", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "tag 0x47"},
		{"oversize claim", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}, "too large"},
		{"indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x42, 0x00, 0x00, 0x00}, "indefinite"},
		{"truncated bind", bindMsg(1, "alice@example.com", "pw")[:10], "unexpected EOF"},
		{"bind without password", []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x02, 'a', 'b'}, "BindRequest authentication"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := rawExchange(t, h.addr, tt.in)
			resp := responses(t, out)
			if len(resp) != 1 || resp[0].Tag != 24 || resp[0].MessageID != 0 || resp[0].ResultCode != 2 {
				t.Fatalf("answer %+v, want one notice of disconnection with protocolError", resp)
			}
			events := h.rec.Events()
			if len(events) != i+1 {
				t.Fatalf("%d events, want %d", len(events), i+1)
			}
			e := events[i]
			if e.Kind != event.RejectedByGateway || e.Reason != event.ReasonMalformedBind || !strings.Contains(e.Detail, tt.detail) {
				t.Fatalf("event %+v, want malformed_bind with %q", e, tt.detail)
			}
		})
	}
}

func bindMsg(id int64, name, pw string) []byte {
	return envelope(id, bindOp(name, ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pw, "simple")))
}

func bindOp(name string, auth *ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "BindRequest")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 3, "version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "name"))
	op.AppendChild(auth)
	return op
}

func envelope(id int64, op *ber.Packet) []byte {
	m := ber.NewSequence("LDAPMessage")
	m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	m.AppendChild(op)
	return m.Bytes()
}

func startTLSMsg(id int64) []byte {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 23, nil, "ExtendedRequest")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "1.3.6.1.4.1.1466.20037", "requestName"))
	return envelope(id, op)
}

func unbindMsg(id int64) []byte {
	return envelope(id, ber.Encode(ber.ClassApplication, ber.TypePrimitive, 2, nil, "UnbindRequest"))
}

func TestProxyAnonymous(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("refused", func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.stop()
		l := h.client(t)
		wantCode(t, l.UnauthenticatedBind(""), goldap.LDAPResultInappropriateAuthentication)
		l.Close()
		// A search without any bind is anonymous too.
		l = h.client(t)
		_, err := searchBase(t, l)
		wantCode(t, err, goldap.LDAPResultInappropriateAuthentication)
		l.Close()
		h.wantEvents(t,
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonBindRefused, Detail: "anonymous"},
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonBindRefused, Detail: "anonymous"},
		)
	})
	t.Run("routed", func(t *testing.T) {
		h := newHarness(t, func(o *ldap.Options, dir ldap.Target) {
			dir.Service = "anon"
			o.Anonymous = &dir
		})
		defer h.stop()
		l := h.client(t)
		if err := l.UnauthenticatedBind(""); err != nil {
			t.Fatal(err)
		}
		l.Close()
		l = h.client(t)
		res, err := searchBase(t, l)
		if err != nil || len(res.Entries) != 1 || !strings.Contains(res.Entries[0].GetAttributeValue("description"), "anonymous") {
			t.Fatalf("anonymous search: %v %+v", err, res)
		}
		// A later bind on the anonymous connection is watched.
		wantCode(t, l.Bind("alice@example.com", "wrong"), goldap.LDAPResultInvalidCredentials)
		l.Close()
		h.wantEvents(t,
			event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "anon"},
			event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "anon", User: "alice"},
		)
	})
	t.Run("unbind first needs no backend", func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.stop()
		if out := rawExchange(t, h.addr, unbindMsg(1)); len(out) != 0 {
			t.Fatalf("answer %x to an unbind", out)
		}
		h.wantEvents(t)
	})
}

func TestProxySASLRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, nil)
	defer h.stop()
	l := h.client(t)
	defer l.Close()
	wantCode(t, l.ExternalBind(), goldap.LDAPResultAuthMethodNotSupported)
	h.wantEvents(t, event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonBindRefused, Detail: "mechanism EXTERNAL"})
}

func TestProxySASLRouted(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, func(o *ldap.Options, dir ldap.Target) {
		dir.Service = "sasl"
		o.SASL = &dir
	})
	defer h.stop()
	l := h.client(t)
	defer l.Close()
	// The demo directory does not do SASL: the service says so.
	wantCode(t, l.ExternalBind(), goldap.LDAPResultAuthMethodNotSupported)
	h.wantEvents(t, event.Event{Kind: event.RejectedByService, Reason: event.ReasonBindFailed, Service: "sasl", Detail: "resultCode 7: only simple binds"})
}

func TestProxyStartTLS(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	t.Run("refused first", func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.stop()
		l := h.client(t)
		defer l.Close()
		wantCode(t, l.StartTLS(tlsConf), goldap.LDAPResultProtocolError)
		h.wantEvents(t, event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonBindRefused, Detail: "starttls"})
	})
	t.Run("refused after a bind", func(t *testing.T) {
		h := newHarness(t, nil)
		defer h.stop()
		l := h.client(t)
		defer l.Close()
		if err := l.Bind("alice@example.com", "alice-pw"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, l.StartTLS(tlsConf), goldap.LDAPResultProtocolError)
		h.wantEvents(t,
			event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "dir", User: "alice"},
			event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonBindRefused, Service: "dir", Detail: "starttls"},
		)
	})
	t.Run("routed, declined by the service", func(t *testing.T) {
		h := newHarness(t, func(o *ldap.Options, dir ldap.Target) {
			dir.Service = "tls"
			o.StartTLS = &dir
		})
		defer h.stop()
		// go-ldap's client stops reading after a failed StartTLS, so this
		// speaks LDAP by hand.
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		exchange := func(req []byte) ldap.Response {
			t.Helper()
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			msg, err := ldap.ReadMessage(r, 0)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ldap.ParseResponse(msg)
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		resp := exchange(startTLSMsg(1))
		if resp.Tag != 24 || resp.ResultCode != 2 || !strings.Contains(resp.Diagnostic, "extended operations are not supported") {
			t.Fatalf("StartTLS answer %+v does not come from the service", resp)
		}
		// The relay goes on framing: binds are still seen.
		if resp := exchange(bindMsg(2, "alice@example.com", "wrong")); resp.ResultCode != 49 {
			t.Fatalf("bind answer %+v", resp)
		}
		h.wantEvents(t, event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "tls", User: "alice"})
	})
}

// A client that sends its bind and half-closes still gets the answer: the
// backend here answers only after it has seen the client's end of stream.
func TestProxyHalfClose(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	ln := listen(t)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		msg, err := ldap.ReadMessage(r, 0)
		if err != nil {
			t.Errorf("backend: %v", err)
			return
		}
		req, _ := ldap.ParseRequest(msg)
		if _, err := io.Copy(io.Discard, r); err != nil {
			t.Errorf("backend waiting for EOF: %v", err)
			return
		}
		c.Write(result(req.MessageID, 1, 0))
	})
	rec := &event.Recorder{}
	addr, stop := startProxy(t, ldap.Options{
		Listener: "ldap-test",
		Routes:   map[string]ldap.Target{"example.com": {Service: "slow", Dial: dialTo(ln.Addr().String())}},
		Events:   rec,
		Now:      func() time.Time { return testNow },
	})
	defer stop()
	resp := responses(t, rawExchange(t, addr, bindMsg(5, "alice@example.com", "alice-pw")))
	if len(resp) != 1 || !resp[0].IsBind || resp[0].MessageID != 5 || resp[0].ResultCode != 0 {
		t.Fatalf("answer %+v, want a successful BindResponse", resp)
	}
	h := &harness{rec: rec}
	h.wantEvents(t, event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "slow", User: "alice"})
}

// Windows clients send long-form lengths (0x84 ...); the relay frames them.
func TestProxyLongFormBinds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, nil)
	defer h.stop()
	var in []byte
	in = append(in, ldap.LongForm(t, bindMsg(1, `EXAMPLE\bob`, "wrong"))...)
	in = append(in, ldap.LongForm(t, bindMsg(2, `EXAMPLE\bob`, "bob-pw"))...)
	in = append(in, ldap.LongForm(t, unbindMsg(3))...)
	resp := responses(t, rawExchange(t, h.addr, in))
	if len(resp) != 2 || resp[0].ResultCode != 49 || resp[1].ResultCode != 0 {
		t.Fatalf("answers %+v", resp)
	}
	h.wantEvents(t,
		event.Event{Kind: event.RejectedByService, Reason: event.ReasonInvalidCreds, Service: "dir", User: "bob"},
		event.Event{Kind: event.Success, Reason: event.ReasonOK, Service: "dir", User: "bob"},
	)
}

// Pipelined binds beyond the pending bound still produce one event each.
func TestProxyManyPipelinedBinds(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, nil)
	defer h.stop()
	const n = 150
	var in []byte
	for i := range n {
		in = append(in, bindMsg(int64(i+1), "alice@example.com", "wrong")...)
	}
	in = append(in, unbindMsg(n+1)...)
	resp := responses(t, rawExchange(t, h.addr, in))
	if len(resp) != n {
		t.Fatalf("%d responses, want %d", len(resp), n)
	}
	events := h.rec.Events()
	if len(events) != n {
		t.Fatalf("%d events, want %d", len(events), n)
	}
	named := 0
	for _, e := range events {
		if e.Kind != event.RejectedByService || e.Reason != event.ReasonInvalidCreds {
			t.Fatalf("event %+v", e)
		}
		if e.User == "alice" {
			named++
		}
	}
	if named < 64 {
		t.Fatalf("only %d of %d events name the user; at least the 64 pending ones should", named, n)
	}
}

// A bind larger than MaxMessage later on the connection is refused.
func TestProxyOversizeLaterBind(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	h := newHarness(t, func(o *ldap.Options, _ ldap.Target) { o.MaxMessage = 1024 })
	defer h.stop()
	in := append(bindMsg(1, "alice@example.com", "alice-pw"), bindMsg(2, strings.Repeat("x", 2000)+"@example.com", "pw")...)
	for _, r := range responses(t, rawExchange(t, h.addr, in)) {
		if r.MessageID != 1 {
			t.Fatalf("answer %+v: the oversize bind reached the service", r)
		}
	}
	// The refusal races with the answer to the first bind, so the events
	// are checked without order.
	refused := 0
	for _, e := range h.rec.Events() {
		switch {
		case e.Kind == event.RejectedByGateway && e.Reason == event.ReasonMalformedBind && strings.Contains(e.Detail, "larger than 1024"):
			refused++
		case e.Kind == event.Success && e.User == "alice":
		default:
			t.Errorf("unexpected event %+v", e)
		}
	}
	if refused != 1 {
		t.Fatalf("%d malformed_bind events, want 1: %+v", refused, h.rec.Events())
	}
}

// bigBackend answers every search with one entry of size bytes and accepts
// adds of any size, to check that large messages stream through.
func bigBackend(t *testing.T, size int) (string, func()) {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Go(func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for range 10 {
			msg, err := ldap.ReadMessage(r, 4<<20)
			if err != nil {
				return
			}
			p, err := ber.DecodePacketErr(msg)
			if err != nil {
				t.Errorf("backend: %v", err)
				return
			}
			id := p.Children[0].Value.(int64)
			var out []byte
			switch p.Children[1].Tag {
			case 0:
				out = result(id, 1, 0)
			case 3:
				out = append(entry(id, strings.Repeat("v", size)), result(id, 5, 0)...)
			case 8:
				out = result(id, 9, 0)
				if len(msg) < size {
					out = result(id, 9, 80)
				}
			default:
				return
			}
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	})
	return ln.Addr().String(), func() {
		ln.Close()
		wg.Wait()
	}
}

func result(id int64, app ber.Tag, code int64) []byte {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, app, nil, "response")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, code, "resultCode"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "matchedDN"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "diagnosticMessage"))
	return envelope(id, op)
}

func entry(id int64, value string) []byte {
	e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 4, nil, "SearchResultEntry")
	e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "dc=example,dc=com", "dn"))
	attrs := ber.NewSequence("attributes")
	attr := ber.NewSequence("attribute")
	attr.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "jpegPhoto", "type"))
	vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
	vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, "value"))
	attr.AppendChild(vals)
	attrs.AppendChild(attr)
	e.AppendChild(attrs)
	return envelope(id, e)
}

func TestProxyStreamsLargeMessages(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const size = 300 << 10
	backend, stopBackend := bigBackend(t, size)
	defer stopBackend()
	rec := &event.Recorder{}
	addr, stop := startProxy(t, ldap.Options{
		Listener:   "ldap-test",
		Routes:     map[string]ldap.Target{"example.com": {Service: "big", Dial: dialTo(backend)}},
		MaxMessage: 1024,
		Events:     rec,
	})
	defer stop()
	l, err := goldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind("alice@example.com", "pw"); err != nil {
		t.Fatal(err)
	}
	res, err := searchBase(t, l)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Entries) != 1 || len(res.Entries[0].GetAttributeValue("jpegPhoto")) != size {
		t.Fatalf("large entry did not come through whole")
	}
	add := goldap.NewAddRequest("cn=big,dc=example,dc=com", nil)
	add.Attribute("jpegPhoto", []string{strings.Repeat("w", size)})
	if err := l.Add(add); err != nil {
		t.Fatalf("large add: %v", err)
	}
	if ev := rec.Events(); len(ev) != 1 || ev[0].Kind != event.Success {
		t.Fatalf("events %+v", ev)
	}
}

func TestProxyCancel(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	backend, stopDemo := startDemo(t)
	defer stopDemo()
	p, err := ldap.New(ldap.Options{
		Routes: map[string]ldap.Target{"example.com": {Service: "dir", Dial: dialTo(backend)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.ServeConn(ctx, server, netip.MustParseAddr("192.0.2.1")) }()
	if _, err := client.Write(bindMsg(1, "alice@example.com", "alice-pw")); err != nil {
		t.Fatal(err)
	}
	msg, err := ldap.ReadMessage(client, 0)
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := ldap.ParseResponse(msg); !resp.IsBind || resp.ResultCode != 0 {
		t.Fatalf("response %+v", resp)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeConn after cancel: %v", err)
	}
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client connection still open after cancel")
	}
}

func TestNewValidates(t *testing.T) {
	_, err := ldap.New(ldap.Options{
		Anonymous: &ldap.Target{Service: "x"},
		Routes: map[string]ldap.Target{
			"nodial.example": {Service: "y"},
			"Example.com":    {Service: "z", Dial: dialTo("127.0.0.1:1")},
			"example.org.":   {Service: "z", Dial: dialTo("127.0.0.1:1")},
			"":               {Service: "z", Dial: dialTo("127.0.0.1:1")},
		},
		MaxMessage: 10,
		Idle:       -1,
		Timeout:    -1,
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"Options.Anonymous: Dial is nil", `Options.Routes["nodial.example"]: Dial is nil`,
		`Options.Routes["Example.com"]: not a domain`, `Options.Routes["example.org."]: not a domain`,
		`Options.Routes[""]: not a domain`, "Options.MaxMessage 10", "Options.Idle", "Options.Timeout",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := ldap.New(ldap.Options{}); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
}
