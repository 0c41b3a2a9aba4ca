package sipedge

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/sippolicy"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a Policy with one service, one brand and two companies.
type fixture struct {
	p      *Policy
	events *event.Recorder
	clock  *clock
	pbx    *Service
}

func testTenants(t testing.TB) *sippolicy.Tenants {
	t.Helper()
	tn, err := sippolicy.NewTenants(sippolicy.TenantsConfig{Brands: []sippolicy.BrandConfig{{
		Name: "brand", MaxCalls: 3,
		Companies: []sippolicy.CompanyConfig{
			{
				Name: "hq", Domains: []string{"hq.example.com"},
				AllowedNetworks:     []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
				Users:               []sippolicy.UserConfig{{Name: "rw", CallsFromOtherNetworks: 1}},
				MaxCalls:            2,
				BlockedDestinations: []string{`^(\+|00)882`},
			},
			{Name: "shop", Domains: []string{"shop.example.com"}},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{events: &event.Recorder{}, clock: newClock()}
	f.pbx = &Service{Name: "pbx", UDP: netip.MustParseAddrPort("127.0.0.1:5090")}
	scan, err := sip.NewUAMatcher(sip.DefaultScannerAgents)
	if err != nil {
		t.Fatal(err)
	}
	c := Config{
		Domains:   map[string]*Service{"pbx.example.com": f.pbx, "hq.example.com": f.pbx, "shop.example.com": f.pbx, "192.0.2.1": f.pbx},
		Wildcards: map[string]*Service{"tenants.example.com": f.pbx},
		Tenants:   testTenants(t),
		Trusted:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
		Flood:     sippolicy.FloodConfig{Limit: 5, Window: 2 * time.Second, BlockFor: time.Minute, MaxSources: 1000},
		Scanners:  scan,
	}
	if mod != nil {
		mod(&c)
	}
	p, err := New(c, Options{Events: f.events, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	f.p = p
	return f
}

// msg builds a SIP message.
type msg struct {
	method, ruri      string // request
	status            int    // response
	cseqMethod        string // response; default method
	from, to          string // user@domain
	toTag, callID, ua string
	auth              string // Digest username
	extra, body       string
	cseq              int
}

func (m msg) bytes() []byte {
	var b strings.Builder
	cseqMethod := m.cseqMethod
	if cseqMethod == "" {
		cseqMethod = m.method
	}
	if m.status > 0 {
		fmt.Fprintf(&b, "SIP/2.0 %d %s\r\n", m.status, sip.ReasonPhrase(m.status))
	} else {
		ruri := m.ruri
		if ruri == "" {
			ruri = "sip:" + m.to
		}
		fmt.Fprintf(&b, "%s %s SIP/2.0\r\n", m.method, ruri)
	}
	callID := m.callID
	if callID == "" {
		callID = "call-1@test"
	}
	cseq := m.cseq
	if cseq == 0 {
		cseq = 1
	}
	fmt.Fprintf(&b, "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK-%s-%d;rport\r\n", strings.ReplaceAll(callID, "@", "."), cseq)
	fmt.Fprintf(&b, "From: <sip:%s>;tag=from1\r\n", m.from)
	to := "To: <sip:" + m.to + ">"
	if m.toTag != "" {
		to += ";tag=" + m.toTag
	}
	b.WriteString(to + "\r\n")
	fmt.Fprintf(&b, "Call-ID: %s\r\nCSeq: %d %s\r\n", callID, cseq, cseqMethod)
	if m.ua != "" {
		b.WriteString("User-Agent: " + m.ua + "\r\n")
	}
	if m.auth != "" {
		fmt.Fprintf(&b, "Authorization: Digest username=\"%s\", realm=\"x\", nonce=\"n\", uri=\"sip:x\", response=\"0123\"\r\n", m.auth)
	}
	b.WriteString(m.extra)
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(m.body), m.body)
	return []byte(b.String())
}

func (m msg) parsed(t testing.TB) *sip.Message {
	t.Helper()
	var pm sip.Message
	if err := sip.Parse(m.bytes(), &pm); err != nil {
		t.Fatalf("test message does not parse: %v\n%s", err, m.bytes())
	}
	return &pm
}

func sess(client string) *session {
	return &session{listener: "test", transport: "udp", client: netip.MustParseAddrPort(client), lm: NewMetrics(nil).listener("test", "udp")}
}

// reasons returns the reasons of the recorded events, in order.
func (f *fixture) reasons() []string {
	var out []string
	for _, e := range f.events.Events() {
		out = append(out, e.Kind.String()+"/"+e.Reason)
	}
	return out
}

func netipAddr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func netipAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
