package sipedge

import (
	"bytes"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
)

func TestRoute(t *testing.T) {
	other := &Service{Name: "other"}
	f := newFixture(t, func(c *Config) { c.Default = other })
	for _, tc := range []struct {
		domain string
		want   string
	}{
		{"pbx.example.com", "pbx"},
		{"PBX.Example.COM", "pbx"},
		{"hq.example.com", "pbx"},
		{"acme.tenants.example.com", "pbx"},
		{"a.b.tenants.example.com", "other"}, // a wildcard matches one label
		{"tenants.example.com", "other"},
		{"192.0.2.1", "pbx"},
		{"unknown.example.org", "other"},
		{"", "other"},
		{strings.Repeat("a", 300), "other"},
	} {
		if got := f.p.Route([]byte(tc.domain)); got == nil || got.Name != tc.want {
			t.Errorf("Route(%q) = %v, want %s", tc.domain, got, tc.want)
		}
	}
	f2 := newFixture(t, nil)
	if got := f2.p.Route([]byte("unknown.example.org")); got != nil {
		t.Errorf("without a default, an unknown domain routes to %v", got.Name)
	}
}

func TestScannerDroppedSilently(t *testing.T) {
	f := newFixture(t, nil)
	m := msg{method: "REGISTER", from: "100@pbx.example.com", to: "100@pbx.example.com", ua: "friendly-scanner"}
	v := f.p.fromClient(sess("198.51.100.1:5060"), m.parsed(t))
	if v.forward || v.status != 0 {
		t.Fatalf("scanner request: %+v, want a silent drop", v)
	}
	if got := f.reasons(); !slices.Equal(got, []string{"rejected_by_gateway/scanner"}) {
		t.Errorf("events %v", got)
	}
	m.ua = "Yealink SIP-T46S 66.86.0.15"
	if v := f.p.fromClient(sess("198.51.100.1:5060"), m.parsed(t)); !v.forward {
		t.Errorf("an ordinary phone is not forwarded: %+v", v)
	}
}

func TestFloodBlocksAndRecovers(t *testing.T) {
	f := newFixture(t, nil)
	s := sess("198.51.100.2:5060")
	opt := msg{method: "OPTIONS", from: "x@pbx.example.com", to: "y@pbx.example.com"}
	for i := range 5 {
		if v := f.p.fromClient(s, opt.parsed(t)); !v.forward {
			t.Fatalf("request %d within the limit dropped", i+1)
		}
	}
	for i := range 3 {
		if v := f.p.fromClient(s, opt.parsed(t)); v.forward || v.status != 0 {
			t.Fatalf("request %d over the limit: %+v, want no answer", 6+i, v)
		}
	}
	// In-dialog requests of a blocked source are dropped too.
	bye := msg{method: "BYE", from: "x@pbx.example.com", to: "y@pbx.example.com", toTag: "abc"}
	if v := f.p.fromClient(s, bye.parsed(t)); v.forward {
		t.Error("in-dialog request of a blocked source forwarded")
	}
	if got := f.reasons(); !slices.Equal(got, []string{"rejected_by_gateway/flood"}) {
		t.Errorf("events %v, want exactly one flood event", got)
	}
	// Trusted sources and company networks are never limited.
	for _, src := range []string{"10.0.0.5:5060", "192.0.2.9:5060"} {
		for i := range 20 {
			if v := f.p.fromClient(sess(src), opt.parsed(t)); !v.forward {
				t.Fatalf("exempt source %s dropped at request %d", src, i+1)
			}
		}
	}
	f.clock.add(time.Minute + time.Second)
	if v := f.p.fromClient(s, opt.parsed(t)); !v.forward {
		t.Error("source still blocked after block_for")
	}
}

func TestCompanyIPFilter(t *testing.T) {
	f := newFixture(t, nil)
	inside, outside := "192.0.2.50:5060", "198.51.100.3:5060"
	reg := msg{method: "REGISTER", from: "alice@hq.example.com", to: "alice@hq.example.com"}
	if v := f.p.fromClient(sess(inside), reg.parsed(t)); !v.forward {
		t.Errorf("REGISTER from the company network: %+v", v)
	}
	if v := f.p.fromClient(sess(outside), reg.parsed(t)); v.forward || v.status != 403 {
		t.Errorf("REGISTER from outside: %+v, want 403", v)
	}
	if v := f.p.fromClient(sess("10.0.0.7:5060"), reg.parsed(t)); !v.forward {
		t.Errorf("REGISTER from a trusted network: %+v", v)
	}
	rw := msg{method: "REGISTER", from: "rw@hq.example.com", to: "rw@hq.example.com"}
	if v := f.p.fromClient(sess(outside), rw.parsed(t)); !v.forward {
		t.Errorf("roadwarrior REGISTER from outside: %+v", v)
	}
	// A company without networks has no filter.
	shop := msg{method: "REGISTER", from: "bob@shop.example.com", to: "bob@shop.example.com"}
	if v := f.p.fromClient(sess(outside), shop.parsed(t)); !v.forward {
		t.Errorf("REGISTER to a company without a filter: %+v", v)
	}
	evs := f.events.Events()
	if len(evs) != 1 || evs[0].Reason != "network_refused" || evs[0].User != "alice" || evs[0].Source.String() != "198.51.100.3" {
		t.Errorf("events %+v, want one network_refused for alice", evs)
	}
}

// invite places an outgoing call and answers it; it returns the verdict of
// the INVITE.
func (f *fixture) invite(t *testing.T, src, from, to, callID string, auth bool) verdict {
	t.Helper()
	m := msg{method: "INVITE", from: from, to: to, callID: callID}
	if auth {
		m.auth = strings.Split(from, "@")[0]
	}
	v := f.p.fromClient(sess(src), m.parsed(t))
	if v.forward {
		ok := msg{status: 200, cseqMethod: "INVITE", from: from, to: to, toTag: "t", callID: callID}
		f.p.fromBackend(sess(src), ok.parsed(t))
	}
	return v
}

func TestCallLimits(t *testing.T) {
	f := newFixture(t, nil)
	src := "192.0.2.60:5060"
	// Company hq: max 2 external calls; brand: max 3.
	for i := range 2 {
		if v := f.invite(t, src, "alice@hq.example.com", "0049301234567"+strconv.Itoa(i)+"@hq.example.com", "hq-"+strconv.Itoa(i), true); !v.forward {
			t.Fatalf("external call %d refused: %+v", i+1, v)
		}
	}
	if v := f.invite(t, src, "alice@hq.example.com", "00493012345679@hq.example.com", "hq-3", true); v.forward || v.status != 403 {
		t.Fatalf("3rd external call of hq: %+v, want 403 (company limit 2)", v)
	}
	// Extensions are not external and do not count.
	if v := f.invite(t, src, "alice@hq.example.com", "201@hq.example.com", "hq-ext", true); !v.forward {
		t.Fatalf("internal call refused: %+v", v)
	}
	// Brand limit 3: shop has no limit of its own but the brand has one slot left.
	if v := f.invite(t, "203.0.113.1:5060", "bob@shop.example.com", "0044201234567@shop.example.com", "shop-1", true); !v.forward {
		t.Fatalf("shop's first external call refused: %+v", v)
	}
	if v := f.invite(t, "203.0.113.1:5060", "bob@shop.example.com", "0044201234568@shop.example.com", "shop-2", true); v.status != 403 {
		t.Fatalf("4th external call of the brand: %+v, want 403", v)
	}
	// Incoming external call to hq while the brand is full: 486 to the PBX.
	in := msg{method: "INVITE", ruri: "sip:alice@192.0.2.60:5060", from: "00493099999999@pbx.example.com", to: "alice@hq.example.com", callID: "in-1"}
	if v := f.p.fromBackend(sess(src), in.parsed(t)); v.forward || v.status != 486 {
		t.Fatalf("incoming call at the limit: %+v, want 486", v)
	}
	// The PBX's ACK to that 486 carries the gateway's tag: absorbed, the
	// phone never hears of the call.
	raw := in.bytes()
	var im sip.Message
	sip.Parse(raw, &im)
	var busy sip.Message
	if err := sip.Parse(f.p.appendAnswer(nil, raw, &im, 486), &busy); err != nil {
		t.Fatal(err)
	}
	ack := msg{method: "ACK", ruri: "sip:alice@192.0.2.60:5060", from: "00493099999999@pbx.example.com", to: "alice@hq.example.com", toTag: string(busy.To.Tag), callID: "in-1"}
	if v := f.p.fromBackend(sess(src), ack.parsed(t)); v.forward {
		t.Fatal("the PBX's ACK to the gateway's 486 reached the phone")
	}
	// A BYE frees a slot.
	bye := msg{method: "BYE", from: "alice@hq.example.com", to: "00493012345670@hq.example.com", toTag: "t", callID: "hq-0", cseq: 2}
	f.p.fromClient(sess(src), bye.parsed(t))
	if v := f.invite(t, src, "alice@hq.example.com", "00493012345679@hq.example.com", "hq-4", true); !v.forward {
		t.Fatalf("call after a BYE refused: %+v", v)
	}
	var limits int
	for _, e := range f.events.Events() {
		if e.Reason == "call_limit" {
			limits++
		}
	}
	if limits != 3 {
		t.Errorf("%d call_limit events, want 3: %v", limits, f.reasons())
	}
}

// TestSpoofedInvitesTakeNoSlots: bare INVITEs (no credentials) claiming a
// user only check the limit; they cannot use up the slots.
func TestSpoofedInvitesTakeNoSlots(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 50 {
		m := msg{method: "INVITE", from: "alice@hq.example.com", to: "00493012345678@hq.example.com", callID: "spoof-" + strconv.Itoa(i)}
		f.p.fromClient(sess("192.0.2.66:5060"), m.parsed(t))
		ch := msg{status: 407, cseqMethod: "INVITE", from: "alice@hq.example.com", to: "00493012345678@hq.example.com", toTag: "x", callID: "spoof-" + strconv.Itoa(i)}
		f.p.fromBackend(sess("192.0.2.66:5060"), ch.parsed(t))
	}
	if v := f.invite(t, "192.0.2.60:5060", "alice@hq.example.com", "00493012345670@hq.example.com", "real", true); !v.forward {
		t.Fatalf("the real user's call is refused after spoofed INVITEs: %+v", v)
	}
}

func TestRoadwarriorCalls(t *testing.T) {
	f := newFixture(t, nil)
	outside := "198.51.100.9:5060"
	if v := f.invite(t, outside, "rw@hq.example.com", "201@hq.example.com", "rw-1", true); !v.forward {
		t.Fatalf("roadwarrior's first call from outside refused: %+v", v)
	}
	if v := f.invite(t, outside, "rw@hq.example.com", "202@hq.example.com", "rw-2", true); v.status != 403 {
		t.Fatalf("roadwarrior's second concurrent call from outside: %+v, want 403", v)
	}
	// From inside, the roadwarrior limit does not apply.
	if v := f.invite(t, "192.0.2.61:5060", "rw@hq.example.com", "203@hq.example.com", "rw-3", true); !v.forward {
		t.Fatalf("roadwarrior's call from inside refused: %+v", v)
	}
	if v := f.invite(t, outside, "alice@hq.example.com", "201@hq.example.com", "al-1", true); v.status != 403 {
		t.Fatalf("ordinary user's call from outside: %+v, want 403", v)
	}
}

func TestBlockedDestination(t *testing.T) {
	f := newFixture(t, nil)
	if v := f.invite(t, "192.0.2.60:5060", "alice@hq.example.com", "+88216123456@hq.example.com", "sat", true); v.status != 403 {
		t.Fatalf("call to a blocked destination: %+v, want 403", v)
	}
	if got := f.reasons(); !slices.Equal(got, []string{"rejected_by_gateway/blocked_destination"}) {
		t.Errorf("events %v", got)
	}
}

// TestAnswersFromThePBX: what the PBX answers becomes events with the user.
func TestAnswersFromThePBX(t *testing.T) {
	f := newFixture(t, nil)
	s := sess("198.51.100.20:5060")
	ans := func(status int, user string) {
		m := msg{status: status, cseqMethod: "REGISTER", from: user + "@pbx.example.com", to: user + "@pbx.example.com", toTag: "t"}
		if v := f.p.fromBackend(s, m.parsed(t)); !v.forward {
			t.Fatalf("answer %d not forwarded", status)
		}
	}
	ans(401, "100") // the first challenge of a registration never counts
	ans(200, "100")
	ans(401, "100") // after a success, again a first challenge
	ans(401, "101")
	ans(401, "101") // a second challenge without success: a wrong password
	ans(401, "101")
	ans(403, "102")
	ans(404, "103")
	want := []string{"success/ok", "rejected_by_service/repeated_challenge", "rejected_by_service/repeated_challenge",
		"rejected_by_service/status", "rejected_by_service/status"}
	if got := f.reasons(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	evs := f.events.Events()
	if evs[0].User != "100" || evs[1].User != "101" || evs[3].User != "102" {
		t.Errorf("users not attached: %+v", evs)
	}
}

func TestOwnAnswersAndAbsorbedACK(t *testing.T) {
	f := newFixture(t, nil)
	req := msg{method: "REGISTER", from: "alice@hq.example.com", to: "alice@hq.example.com"}
	raw := req.bytes()
	var m sip.Message
	if err := sip.Parse(raw, &m); err != nil {
		t.Fatal(err)
	}
	resp := f.p.appendAnswer(nil, raw, &m, 403)
	var r sip.Message
	if err := sip.Parse(resp, &r); err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, resp)
	}
	if r.Request || r.Status != 403 || !bytes.Equal(r.CallID, m.CallID) || r.CSeq != m.CSeq || !f.p.ownTag(r.To.Tag) {
		t.Fatalf("answer %q", resp)
	}
	if !bytes.Contains(resp, []byte("branch=z9hG4bK-call-1.test-1")) {
		t.Errorf("answer lacks the request's Via:\n%s", resp)
	}
	ack := msg{method: "ACK", from: "alice@hq.example.com", to: "alice@hq.example.com", toTag: string(r.To.Tag)}
	if v := f.p.fromClient(sess("198.51.100.3:5060"), ack.parsed(t)); v.forward {
		t.Error("ACK to the gateway's own answer forwarded")
	}
	ack.toTag = "pbx-tag"
	if v := f.p.fromClient(sess("198.51.100.3:5060"), ack.parsed(t)); !v.forward {
		t.Error("ACK to the PBX's answer absorbed")
	}
}

func TestClientHeaderRewrite(t *testing.T) {
	in := msg{method: "INVITE", from: "a@pbx.example.com", to: "b@pbx.example.com",
		extra: "X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for : 7.7.7.7\r\nX-Forwarded-Foreign: keep\r\n", body: "v=0\r\n"}
	raw := in.bytes()
	var m sip.Message
	if err := sip.Parse(raw, &m); err != nil {
		t.Fatal(err)
	}
	out := appendWithClientHeader(nil, raw, m.HeaderLen, "X-Forwarded-For", netipAddr("198.51.100.4"))
	var o sip.Message
	if err := sip.Parse(out, &o); err != nil {
		t.Fatalf("rewritten message does not parse: %v\n%s", err, out)
	}
	s := string(out)
	if strings.Contains(s, "6.6.6.6") || strings.Contains(s, "7.7.7.7") || !strings.Contains(s, "X-Forwarded-For: 198.51.100.4\r\n\r\nv=0\r\n") ||
		!strings.Contains(s, "X-Forwarded-Foreign: keep\r\n") || !strings.HasPrefix(s, "INVITE sip:b@pbx.example.com SIP/2.0\r\n") {
		t.Errorf("rewritten message:\n%s", s)
	}
}

func TestProxyV2Header(t *testing.T) {
	v4 := appendProxyV2(nil, netipAddrPort("198.51.100.4:40000"), netipAddrPort("192.0.2.1:5060"))
	want := append([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"), 198, 51, 100, 4, 192, 0, 2, 1, 0x9c, 0x40, 0x13, 0xc4)
	if !bytes.Equal(v4, want) {
		t.Errorf("v4 header % x\nwant % x", v4, want)
	}
	v6 := appendProxyV2(nil, netipAddrPort("[2001:db8::1]:40000"), netipAddrPort("192.0.2.1:5060"))
	if len(v6) != 16+36 || v6[13] != 0x21 || v6[15] != 36 {
		t.Errorf("v6 header % x", v6)
	}
}

// brokenCounter is a call counter that cannot be read (a shared store
// that is down).
type brokenCounter struct{}

var errCounterDown = errors.New("counter store unreachable (test)")

func (brokenCounter) Acquire([]string, []int) (bool, int, error) { return false, -1, errCounterDown }
func (brokenCounter) Add([]string) error                         { return errCounterDown }
func (brokenCounter) Release([]string) error                     { return errCounterDown }
func (brokenCounter) Count(string) (int, error)                  { return 0, errCounterDown }

// TestCounterDownFailsClosed: a call limit that cannot be read refuses the
// call and says why in the log.
func TestCounterDownFailsClosed(t *testing.T) {
	var logs bytes.Buffer
	rec := &event.Recorder{}
	p, err := New(Config{
		Domains: map[string]*Service{"hq.example.com": {Name: "pbx"}},
		Tenants: testTenants(t),
	}, Options{Counter: brokenCounter{}, Events: rec, Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	m := msg{method: "INVITE", from: "alice@hq.example.com", to: "00493012345678@hq.example.com", auth: "alice"}
	if v := p.fromClient(sess("192.0.2.60:5060"), m.parsed(t)); v.forward || v.status != 403 {
		t.Fatalf("call with the counter down: %+v, want 403", v)
	}
	if !strings.Contains(logs.String(), "call counter failed") || !strings.Contains(logs.String(), errCounterDown.Error()) {
		t.Errorf("log does not say why:\n%s", logs.String())
	}
	if evs := rec.Events(); len(evs) != 1 || evs[0].Reason != event.ReasonCallLimit {
		t.Errorf("events %+v", evs)
	}
}
