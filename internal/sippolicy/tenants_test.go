package sippolicy

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

// testTenantsConfig is two brands, three companies.
func testTenantsConfig() TenantsConfig {
	return TenantsConfig{Brands: []BrandConfig{
		{Name: "acme", MaxCalls: 2, Companies: []CompanyConfig{
			{
				Name:            "acme-hq",
				Domains:         []string{"hq.acme.example", "Voice.Acme.Example."},
				AllowedNetworks: pfx("192.0.2.0/24", "2001:db8:a::/48"),
				Users: []UserConfig{
					{Name: "alice", CallsFromOtherNetworks: 1},
					{Name: "bob", CallsFromOtherNetworks: 3},
					{Name: "carol"},
				},
				MaxCalls:            5,
				BlockedDestinations: []string{`^\+?(00)?882`, `^\+?(00)?53`},
			},
			{
				Name:     "acme-shop",
				Domains:  []string{"shop.acme.example", "[2001:DB8::10]", "198.51.100.10"},
				External: `^0[0-9]{4,}$`,
			},
		}},
		{Name: "beta", Companies: []CompanyConfig{{
			Name:            "beta-1",
			Domains:         []string{"pbx.beta.example"},
			AllowedNetworks: pfx("::ffff:203.0.113.0/120", "192.0.2.0/24"),
		}}},
	}}
}

func newTenants(t testing.TB, c TenantsConfig) *Tenants {
	t.Helper()
	ts, err := NewTenants(c)
	if err != nil {
		t.Fatalf("NewTenants: %v", err)
	}
	return ts
}

func company(t testing.TB, ts *Tenants, domain string) *Company {
	t.Helper()
	c := ts.CompanyByDomain([]byte(domain))
	if c == nil {
		t.Fatalf("no company for %q", domain)
	}
	return c
}

func TestTenantsValidate(t *testing.T) {
	one := func(mod func(*CompanyConfig)) TenantsConfig {
		c := CompanyConfig{Name: "co", Domains: []string{"co.example"}}
		mod(&c)
		return TenantsConfig{Brands: []BrandConfig{{Name: "br", Companies: []CompanyConfig{c}}}}
	}
	tests := []struct {
		name string
		cfg  TenantsConfig
		want []string // substrings, one per expected problem
	}{
		{"empty", TenantsConfig{}, nil},
		{"example", testTenantsConfig(), nil},
		{"brand without companies", TenantsConfig{Brands: []BrandConfig{{Name: "b"}}}, nil},
		{"empty brand name", TenantsConfig{Brands: []BrandConfig{{}}}, []string{"brands[0]: name: empty"}},
		{"duplicate brand", TenantsConfig{Brands: []BrandConfig{{Name: "b"}, {Name: "b"}}}, []string{`brand "b": name: duplicate brand`}},
		{"brand name with slash", TenantsConfig{Brands: []BrandConfig{{Name: "a/b"}}}, []string{`brand "a/b": name: contains '/'`}},
		{"brand name with control", TenantsConfig{Brands: []BrandConfig{{Name: "a\nb"}}}, []string{"control character"}},
		{"brand name too long", TenantsConfig{Brands: []BrandConfig{{Name: strings.Repeat("x", 129)}}}, []string{"longer than 128"}},
		{"brand name not utf-8", TenantsConfig{Brands: []BrandConfig{{Name: "\xff"}}}, []string{"UTF-8"}},
		{"negative brand max_calls", TenantsConfig{Brands: []BrandConfig{{Name: "b", MaxCalls: -1}}}, []string{`brand "b": max_calls -1`}},
		{"empty company name", one(func(c *CompanyConfig) { c.Name = "" }), []string{`brand "br": companies[0]: name: empty`}},
		{"company name with slash", one(func(c *CompanyConfig) { c.Name = "x/y" }), []string{`company "x/y": name: contains '/'`}},
		{"negative company max_calls", one(func(c *CompanyConfig) { c.MaxCalls = -2 }), []string{`brand "br": company "co": max_calls -2`}},
		{"no domain", one(func(c *CompanyConfig) { c.Domains = nil }), []string{`company "co": domains: at least one`}},
		{"bad domains", one(func(c *CompanyConfig) {
			c.Domains = []string{"ok.example", "", "a..b", "sp ace.example", "[192.0.2.1]", "fe80::1%eth0", strings.Repeat("a", 64) + ".example", "é.example"}
		}), []string{`domains[1] ""`, `domains[2] "a..b"`, `domains[3] "sp ace.example"`, `domains[4] "[192.0.2.1]"`, `domains[5] "fe80::1%eth0"`, `domains[6]`, `domains[7]`}},
		{"domain twice in a company", one(func(c *CompanyConfig) { c.Domains = []string{"co.example", "CO.example."} }), []string{`domains[1] "CO.example.": listed twice`}},
		{"bad prefixes", one(func(c *CompanyConfig) {
			c.AllowedNetworks = []netip.Prefix{{}, netip.MustParsePrefix("::ffff:0.0.0.0/64")}
		}), []string{"allowed_networks[0]", "allowed_networks[1] ::ffff:0.0.0.0/64"}},
		{"bad users", one(func(c *CompanyConfig) {
			c.Users = []UserConfig{{Name: "a"}, {Name: ""}, {Name: "a"}, {Name: "b", CallsFromOtherNetworks: 4}, {Name: "c", CallsFromOtherNetworks: -1}, {Name: "d e"}, {Name: strings.Repeat("u", 129)}}
		}), []string{`users[1]: name: empty`, `user "a": name: duplicate user`, `user "b": calls_from_other_networks 4`, `user "c": calls_from_other_networks -1`, `user "d e": name: contains a space`, "longer than 128"}},
		{"bad external", one(func(c *CompanyConfig) { c.External = "(" }), []string{`company "co": external "("`}},
		{"bad blocked destinations", one(func(c *CompanyConfig) { c.BlockedDestinations = []string{"^00", "", "[", `\C`} }), []string{"blocked_destinations[1]: empty pattern", `blocked_destinations[2] "["`, `blocked_destinations[3]`}},
		{"duplicate company across brands", TenantsConfig{Brands: []BrandConfig{
			{Name: "b1", Companies: []CompanyConfig{{Name: "co", Domains: []string{"a.example"}}}},
			{Name: "b2", Companies: []CompanyConfig{{Name: "co", Domains: []string{"b.example"}}}},
		}}, []string{`brand "b2": company "co": name: duplicate company (also in brand "b1")`}},
		{"domain in two companies", TenantsConfig{Brands: []BrandConfig{
			{Name: "b1", Companies: []CompanyConfig{{Name: "c1", Domains: []string{"a.example"}}}},
			{Name: "b2", Companies: []CompanyConfig{{Name: "c2", Domains: []string{"A.EXAMPLE."}}}},
		}}, []string{`brand "b2": company "c2": domains[0] "A.EXAMPLE.": already a domain of company "c1"`}},
		{"every problem at once", TenantsConfig{Brands: []BrandConfig{
			{Name: "", MaxCalls: -1, Companies: []CompanyConfig{{Name: "", MaxCalls: -1, External: "("}}},
		}}, []string{"brands[0]: name: empty", "brands[0]: max_calls -1", "companies[0]: name: empty", "companies[0]: max_calls -1", "domains: at least one", `external "("`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := NewTenants(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil || ts == nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if ts != nil {
				t.Error("Tenants returned with an error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			if u, ok := err.(interface{ Unwrap() []error }); !ok || len(u.Unwrap()) != len(tt.want) {
				t.Errorf("want %d problems, got: %v", len(tt.want), err)
			} else {
				for _, e := range u.Unwrap() {
					if !errors.Is(e, ErrConfig) {
						t.Errorf("problem %v does not wrap ErrConfig", e)
					}
				}
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCompanyByDomain(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	tests := []struct {
		domain, want string // want "" = nil
	}{
		{"hq.acme.example", "acme-hq"},
		{"HQ.Acme.EXAMPLE", "acme-hq"},
		{"hq.acme.example.", "acme-hq"},
		{"voice.acme.example", "acme-hq"},
		{"voice.acme.example.", "acme-hq"},
		{"shop.acme.example", "acme-shop"},
		{"2001:db8::10", "acme-shop"},
		{"[2001:db8::10]", "acme-shop"},
		{"2001:DB8::10", "acme-shop"},
		{"198.51.100.10", "acme-shop"},
		{"pbx.beta.example", "beta-1"},
		{"", ""},
		{".", ""},
		{"hq.acme.example..", ""},
		{"acme.example", ""},
		{"xhq.acme.example", ""},
		{"hq.acme.example.com", ""},
		{"[hq.acme.example]", ""},
		{strings.Repeat("a", 300), ""},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			c := ts.CompanyByDomain([]byte(tt.domain))
			switch {
			case tt.want == "" && c != nil:
				t.Fatalf("got %q, want none", c.Name)
			case tt.want != "" && (c == nil || c.Name != tt.want):
				t.Fatalf("got %v, want %q", c, tt.want)
			}
		})
	}
	if c := company(t, ts, "pbx.beta.example"); c.Brand == nil || c.Brand.Name != "beta" || c.Brand.MaxCalls != 0 {
		t.Errorf("beta-1 brand %+v", c.Brand)
	}
	if c := company(t, ts, "hq.acme.example"); c.Brand.Name != "acme" || c.Brand.MaxCalls != 2 || c.MaxCalls() != 5 {
		t.Errorf("acme-hq: brand %+v, max calls %d", c.Brand, c.MaxCalls())
	}
	if a, b := company(t, ts, "hq.acme.example"), company(t, ts, "shop.acme.example"); a.Brand != b.Brand {
		t.Error("companies of one brand do not share it")
	}
}

func TestTenantsListsAndNetworks(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	var names []string
	for _, c := range ts.Companies() {
		names = append(names, c.Name)
	}
	if want := []string{"acme-hq", "acme-shop", "beta-1"}; !slices.Equal(names, want) {
		t.Errorf("Companies %v, want %v", names, want)
	}
	want := pfx("192.0.2.0/24", "2001:db8:a::/48", "203.0.113.0/24")
	if got := ts.Networks(); !slices.Equal(got, want) {
		t.Errorf("Networks %v, want %v", got, want)
	}
	// The slices are the caller's.
	ts.Networks()[0] = netip.Prefix{}
	ts.Companies()[0] = nil
	if ts.Networks()[0] != want[0] || ts.Companies()[0] == nil {
		t.Error("a returned slice aliases the Tenants")
	}
}

func TestCompanyInside(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	hq, shop, beta := company(t, ts, "hq.acme.example"), company(t, ts, "shop.acme.example"), company(t, ts, "pbx.beta.example")
	if !hq.FilterOn() || shop.FilterOn() || !beta.FilterOn() {
		t.Fatalf("FilterOn: hq %v shop %v beta %v", hq.FilterOn(), shop.FilterOn(), beta.FilterOn())
	}
	tests := []struct {
		co   *Company
		addr string
		want bool
	}{
		{hq, "192.0.2.1", true},
		{hq, "192.0.2.255", true},
		{hq, "::ffff:192.0.2.7", true},
		{hq, "192.0.3.1", false},
		{hq, "2001:db8:a:1::1", true},
		{hq, "2001:db8:b::1", false},
		{hq, "203.0.113.1", false},
		{beta, "203.0.113.9", true},
		{beta, "::ffff:203.0.113.9", true},
		{beta, "192.0.2.9", true},
		{beta, "::ffff:c000:209", true},
		{beta, "198.51.100.1", false},
		{shop, "198.51.100.1", true}, // filter off
		{shop, "2001:db8::1", true},
	}
	for _, tt := range tests {
		if got := tt.co.Inside(netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("%s Inside(%s) = %v, want %v", tt.co.Name, tt.addr, got, tt.want)
		}
	}
	if hq.Inside(netip.Addr{}) {
		t.Error("invalid address inside a filtered company")
	}
	if !shop.Inside(netip.Addr{}) {
		t.Error("filter off: invalid address not inside")
	}
}

func TestCompanyRoadwarrior(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	hq, shop := company(t, ts, "hq.acme.example"), company(t, ts, "shop.acme.example")
	for user, want := range map[string]int{"alice": 1, "bob": 3, "carol": 0, "dave": 0, "Alice": 0, "%61lice": 0, "": 0} {
		if got := hq.Roadwarrior([]byte(user)); got != want {
			t.Errorf("Roadwarrior(%q) = %d, want %d", user, got, want)
		}
	}
	if shop.Roadwarrior([]byte("alice")) != 0 || shop.Roadwarrior(nil) != 0 {
		t.Error("roadwarrior of another company")
	}
}

func TestCompanyExternal(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	hq, shop := company(t, ts, "hq.acme.example"), company(t, ts, "shop.acme.example")
	tests := []struct {
		co   *Company
		user string
		want bool
	}{
		{hq, "34911234567", true},
		{hq, "+34911234567", true},
		{hq, "123456", true},
		{hq, "12345", false},
		{hq, "101", false},
		{hq, "", false},
		{hq, "alice", false},
		{hq, "+12345", false},
		{hq, "1234567a", false},
		// Escapes and separators do not hide a number.
		{hq, "%2B34911234567", true},
		{hq, "%2b34911234567", true},
		{hq, "+34-91-123-4567", true},
		{hq, "+34.91.123.45.67", true},
		{hq, "(0034)%20911", false}, // a space is not a separator
		{hq, "(0034)911234567", true},
		{hq, "%33%34%39%31%31%32", true},
		{hq, "+34911234567;phone-context=example.com", true},
		{hq, "1-0-1", false},
		{hq, "%zz123456", false}, // invalid escape kept
		{hq, "123456%", false},
		{hq, strings.Repeat("1", 256), true},
		{hq, strings.Repeat("x", 257), true}, // too long: fail closed
		{shop, "012345", true},
		{shop, "0-1234", true},
		{shop, "34911234567", false},
		{shop, "0123", false},
	}
	for _, tt := range tests {
		if got := tt.co.External([]byte(tt.user)); got != tt.want {
			t.Errorf("%s External(%q) = %v, want %v", tt.co.Name, tt.user, got, tt.want)
		}
	}
}

func TestCompanyBlockedDestination(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	hq, shop := company(t, ts, "hq.acme.example"), company(t, ts, "shop.acme.example")
	tests := []struct {
		co      *Company
		user    string
		pattern string // "" = not blocked
	}{
		{hq, "+88212345678", `^\+?(00)?882`},
		{hq, "0088212345678", `^\+?(00)?882`},
		{hq, "%2B882-1234", `^\+?(00)?882`},
		{hq, "(00)882", `^\+?(00)?882`},
		{hq, "+5312345", `^\+?(00)?53`},
		{hq, "+34911234567", ""},
		{hq, "882", `^\+?(00)?882`},
		{hq, "alice", ""},
		{hq, "", ""},
		{hq, strings.Repeat("9", 300), `^\+?(00)?882`}, // too long: fail closed
		{shop, "+88212345678", ""},
		{shop, strings.Repeat("9", 300), ""}, // nothing to block
	}
	for _, tt := range tests {
		p, blocked := tt.co.BlockedDestination([]byte(tt.user))
		if blocked != (tt.pattern != "") || p != tt.pattern {
			t.Errorf("%s BlockedDestination(%q) = %q, %v; want %q", tt.co.Name, tt.user, p, blocked, tt.pattern)
		}
	}
}

func TestDialled(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"alice", "alice"},
		{"john.doe", "john.doe"},
		{"%41lice", "Alice"},
		{"+34-91-123", "+3491123"},
		{"*21#", "*21#"},
		{"(0)-.", "0"},
		{"-.()", "-.()"}, // no digit: not a number
		{"+", "+"},
		{"1+2", "1+2"},
		{"12;a=b", "12"},
		{"ab;12", "ab;12"},
		{"%", "%"},
		{"%4", "%4"},
		{"%41", "A"},
		{"%2b1%2D2", "+12"},
	}
	for _, tt := range tests {
		var buf [MaxUserLen]byte
		got, ok := dialled(&buf, []byte(tt.in))
		if !ok || string(got) != tt.want {
			t.Errorf("dialled(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestTenantsAllocs(t *testing.T) {
	ts := newTenants(t, testTenantsConfig())
	hq := company(t, ts, "hq.acme.example")
	domain, other := []byte("Voice.ACME.example."), []byte("nowhere.example")
	in, out, mapped := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:b::1"), netip.MustParseAddr("::ffff:192.0.2.1")
	num, ext, blocked, user := []byte("+34911234567"), []byte("101"), []byte("+88212345678"), []byte("bob")
	escaped, escapedBlocked := []byte("%2B34-911-234-567"), []byte("%2B882-1234")
	var sink int
	if n := testing.AllocsPerRun(1000, func() {
		if ts.CompanyByDomain(domain) != hq || ts.CompanyByDomain(other) != nil {
			sink++
		}
		if !hq.Inside(in) || hq.Inside(out) || !hq.Inside(mapped) {
			sink++
		}
		sink += hq.Roadwarrior(user) - 3
	}); n != 0 {
		t.Errorf("%v allocs per run", n)
	}
	// The regexp package keeps its matchers in a sync.Pool, and so do
	// External and BlockedDestination their buffer for users that need
	// normalising; the race detector's sync.Pool drops items at random.
	if n := testing.AllocsPerRun(1000, func() {
		if !hq.External(num) || hq.External(ext) || !hq.External(escaped) {
			sink++
		}
		if _, b := hq.BlockedDestination(blocked); !b {
			sink++
		}
		if _, b := hq.BlockedDestination(num); b {
			sink++
		}
		if _, b := hq.BlockedDestination(escapedBlocked); !b {
			sink++
		}
	}); n != 0 && !raceEnabled {
		t.Errorf("External, BlockedDestination: %v allocs per run", n)
	}
	if sink != 0 {
		t.Errorf("%d wrong answers", sink)
	}
}

// FuzzDialled checks that dialled never fails on a user part that fits,
// never grows it, and leaves alone what needsDialled says it leaves alone
// (the fast path of External and BlockedDestination).
func FuzzDialled(f *testing.F) {
	for _, s := range []string{"", "alice", "+34-91-123", "%2B1", "%zz", "12;a", "(0)", "*21#", "1+2", "+", "-", "%", "%4"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, user []byte) {
		var buf [MaxUserLen]byte
		d, ok := dialled(&buf, user)
		if ok != (len(user) <= MaxUserLen) {
			t.Fatalf("ok %v for %d bytes", ok, len(user))
		}
		if !ok {
			return
		}
		if len(d) > len(user) {
			t.Fatalf("dialled(%q) = %q: longer", user, d)
		}
		if !needsDialled(user) && !bytes.Equal(d, user) {
			t.Fatalf("dialled(%q) = %q, but needsDialled is false", user, d)
		}
	})
}

func BenchmarkTenants(b *testing.B) {
	ts := newTenants(b, testTenantsConfig())
	hq := company(b, ts, "hq.acme.example")
	b.Run("CompanyByDomain", func(b *testing.B) {
		d := []byte("Voice.ACME.example")
		for b.Loop() {
			ts.CompanyByDomain(d)
		}
	})
	b.Run("Inside", func(b *testing.B) {
		a := netip.MustParseAddr("2001:db8:a::1")
		for b.Loop() {
			hq.Inside(a)
		}
	})
	b.Run("External", func(b *testing.B) {
		u := []byte("+34911234567")
		for b.Loop() {
			hq.External(u)
		}
	})
	b.Run("BlockedDestination", func(b *testing.B) {
		u := []byte("+34911234567")
		for b.Loop() {
			hq.BlockedDestination(u)
		}
	})
}
