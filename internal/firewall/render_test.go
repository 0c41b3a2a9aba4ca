package firewall

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// goldenSpecs are rendered to testdata/golden/NAME.nft.
var goldenSpecs = []struct {
	name string
	spec Spec
}{
	{"empty", Spec{}},
	{"every-role", Spec{
		Roles:     []string{"sip", "sip-tls", "web", "provisioning", "admin", "turn", "ldap", "ssh"},
		TURNRelay: &PortRange{49152, 65535},
		AdminFrom: pfx("198.51.100.0/24", "2001:db8:1::/48"),
		Trusted:   pfx("10.0.0.0/8"),
	}},
	{"custom-ports", Spec{
		Roles: []string{"ssh"},
		Ports: []PortRule{
			{Proto: "udp", Ports: PortRange{10000, 20000}, Comment: "rtp"},
			{Proto: "udp", Ports: PortRange{15000, 25000}}, // merges with the range above
			{Proto: "tcp", Ports: Port(23)},                // merges with ssh's 22
			{Proto: "tcp", Ports: Port(3306), From: pfx("203.0.113.5/32", "203.0.113.0/28", "2001:db8::7/128"), Comment: "mysql from the office"},
			{Proto: "tcp", Ports: Port(3306), From: pfx("203.0.113.0/28"), Comment: "mysql from the office"}, // duplicate
			{Proto: "udp", Ports: PortRange{7060, 7061}, From: pfx("192.0.2.0/24")},
		},
		Listeners: []Listener{{Name: "sip-udp", Proto: "udp", Port: 5060}, {Name: "https", Proto: "tcp", Port: 443}, {Name: "alt", Proto: "tcp", Port: 8443}},
	}},
	{"ipv6-trusted", Spec{
		Roles:   []string{"web"},
		Trusted: pfx("2001:db8::/32", "2001:db8:5::/48", "fd00::1/128", "::ffff:192.0.2.0/120", "192.0.2.128/25", "198.51.100.9/32"),
	}},
	{"flood-limit", Spec{
		Roles:         []string{"sip", "sip-tls"},
		Trusted:       pfx("192.0.2.0/24", "2001:db8::/32"),
		SIPFloodLimit: &FloodLimit{Rate: 20, Burst: 40},
	}},
	{"geo-deny", Spec{
		Roles:         []string{"sip", "sip-tls"},
		Trusted:       pfx("192.0.2.0/24"),
		SIPFloodLimit: &FloodLimit{Rate: 20, Burst: 40},
		Geo: []GeoRule{{
			Ports:     []PortRange{{5060, 5061}},
			Countries: []string{"RU", "cn", "CN"},
			V4: pfx("198.51.100.0/25", "198.51.100.128/26", // one range, not a prefix
				"203.0.113.0/25", "203.0.113.128/25", // one prefix
				"203.0.113.64/26", // inside the above
				"100.64.0.1/32"),
			V6: pfx("2001:db8:100::/40", "2001:db8:200::/40", "3fff::/20"),
		}},
	}},
	{"geo-allow", Spec{
		Roles:     []string{"web", "turn"},
		TURNRelay: &PortRange{49152, 65535},
		Trusted:   pfx("10.0.0.0/8", "fd00::/8"),
		Geo: []GeoRule{
			{Proto: "tcp", Ports: []PortRange{Port(443), Port(80)}, Allow: true, Countries: []string{"DE", "AT"},
				V4: pfx("198.51.100.0/24", "203.0.113.0/24")}, // no IPv6: all IPv6 dropped on 80, 443
			{Proto: "udp", Ports: []PortRange{{49152, 65535}, Port(3478)}, Allow: true, Countries: []string{"de"},
				V4: pfx("198.51.100.0/24"), V6: pfx("2001:db8::/32")},
			{Ports: []PortRange{{10000, 20000}, Port(5080)}, Countries: []string{"XK"}}, // deny, nothing located
		},
	}},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range goldenSpecs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", tc.name+".nft")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render differs from %s (go test -update rewrites it):\n%s", path, Diff(string(want), got))
			}
		})
	}
}

// TestRenderShape checks properties every rendered script must have.
func TestRenderShape(t *testing.T) {
	for _, tc := range goldenSpecs {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Render(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(got, "\n")
			head := []string{"table inet pbxgate {}", "delete table inet pbxgate", "table inet pbxgate {"}
			var body []string
			for _, l := range lines {
				if l != "" && !strings.HasPrefix(l, "#") {
					body = append(body, l)
				}
			}
			if !slices.Equal(body[:3], head) {
				t.Errorf("script starts %q, want %q", body[:3], head)
			}
			for _, l := range lines {
				if strings.Contains(l, "ruleset") || strings.HasPrefix(strings.TrimSpace(l), "table ") && !strings.Contains(l, "inet pbxgate ") {
					t.Errorf("line %q touches something other than table inet pbxgate", l)
				}
				if strings.Contains(l, "elements = { }") || strings.HasSuffix(l, "{  }") {
					t.Errorf("empty element list: %q", l)
				}
			}
			for _, want := range []string{"policy drop;", `iif "lo" accept`, "ct state established,related accept", "nd-neighbor-solicit", "packet-too-big"} {
				if !strings.Contains(got, want) {
					t.Errorf("script lacks %q", want)
				}
			}
			// The flood limit must come after the trusted accepts.
			if i := strings.Index(got, "update @sipflood"); i >= 0 && i < strings.Index(got, "saddr @trusted6 accept") {
				t.Error("flood limit before trusted networks")
			}
			// GeoIP rules: after loopback and trusted networks, before the
			// flood limit, the conntrack accept and every port accept.
			if len(tc.spec.Geo) > 0 {
				jump := strings.Index(got, "ct direction original jump geo")
				if jump < 0 || !strings.Contains(got, "ct state untracked jump geo") || !strings.Contains(got, "\tchain geo {") {
					t.Fatal("GeoIP rules without the jumps to chain geo")
				}
				for _, before := range []string{`iif "lo" accept`, "saddr @trusted6 accept"} {
					if strings.Index(got, before) > jump {
						t.Errorf("%q after the GeoIP jump", before)
					}
				}
				for _, after := range []string{"update @sipflood", "ct state established,related accept", " accept\n"} {
					if i := strings.Index(got[strings.Index(got, "saddr @trusted6 accept\n")+len("saddr @trusted6 accept\n"):], after); i >= 0 &&
						i+strings.Index(got, "saddr @trusted6 accept\n")+len("saddr @trusted6 accept\n") < jump {
						t.Errorf("%q before the GeoIP jump", after)
					}
				}
				for i := range tc.spec.Geo {
					for _, f := range []string{"_4", "_6"} {
						name := fmt.Sprintf("geo%d%s", i, f)
						if !strings.Contains(got, "\tset "+name+" {") || !strings.Contains(got, "@"+name+" drop") {
							t.Errorf("set %s not declared and used", name)
						}
					}
				}
			} else if strings.Contains(got, "jump geo") || strings.Contains(got, "\tchain geo") {
				t.Error("chain geo without GeoIP rules")
			}
			// The table is replaced whole: nothing an earlier script declared
			// survives (flush table would keep sets and chains).
			if !strings.Contains(got, "\ntable inet pbxgate {}\ndelete table inet pbxgate\ntable inet pbxgate {\n") || strings.Contains(got, "flush") {
				t.Error("the script does not replace the table in one transaction")
			}
		})
	}
}

func TestRenderDeterministic(t *testing.T) {
	base := goldenSpecs[2].spec // custom-ports
	base.Roles = []string{"ssh", "web", "sip", "sip"}
	base.Trusted = pfx("10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "10.2.0.0/16")
	want, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		s := base
		s.Roles = slices.Clone(base.Roles)
		s.Ports = slices.Clone(base.Ports)
		s.Listeners = slices.Clone(base.Listeners)
		s.Trusted = slices.Clone(base.Trusted)
		rng.Shuffle(len(s.Roles), func(a, b int) { s.Roles[a], s.Roles[b] = s.Roles[b], s.Roles[a] })
		rng.Shuffle(len(s.Ports), func(a, b int) { s.Ports[a], s.Ports[b] = s.Ports[b], s.Ports[a] })
		rng.Shuffle(len(s.Listeners), func(a, b int) { s.Listeners[a], s.Listeners[b] = s.Listeners[b], s.Listeners[a] })
		rng.Shuffle(len(s.Trusted), func(a, b int) { s.Trusted[a], s.Trusted[b] = s.Trusted[b], s.Trusted[a] })
		got, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("shuffle %d renders differently:\n%s", i, Diff(want, got))
		}
	}
	if !strings.Contains(want, "add element inet pbxgate trusted4 { 10.0.0.0/8, 192.0.2.1 }") {
		t.Errorf("trusted4 not aggregated/sorted:\n%s", want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		wants []string // substrings of the error; nil = valid
	}{
		{"zero", Spec{}, nil},
		{"unknown role", Spec{Roles: []string{"sip", "pop3"}}, []string{`Roles[1]: unknown role "pop3"`}},
		{"turn without relay", Spec{Roles: []string{"turn"}}, []string{"TURNRelay: role turn needs"}},
		{"bad relay", Spec{Roles: []string{"turn"}, TURNRelay: &PortRange{2000, 1000}}, []string{"TURNRelay: range 2000-1000"}},
		{"admin from without role", Spec{AdminFrom: pfx("192.0.2.0/24")}, []string{"AdminFrom: set but role admin"}},
		{"bad trusted", Spec{Trusted: []netip.Prefix{{}}}, []string{"Trusted[0]: invalid prefix"}},
		{"bad port rule", Spec{Ports: []PortRule{{Proto: "sctp", Ports: Port(0), Comment: "a\"b"}}},
			[]string{"Ports[0].Proto", "Ports[0].Ports: port 0", "Ports[0].Comment"}},
		{"bad listener", Spec{Listeners: []Listener{{Name: "x\n tcp dport 1-65535 accept", Proto: "tcp", Port: 0}}},
			[]string{"Listeners[0].Port", "Listeners[0].Name"}},
		{"long comment", Spec{Ports: []PortRule{{Proto: "tcp", Ports: Port(1), Comment: strings.Repeat("x", 129)}}}, []string{"longer than 128"}},
		{"flood", Spec{SIPFloodLimit: &FloodLimit{Ports: []uint16{0}}}, []string{"SIPFloodLimit.Rate", "SIPFloodLimit.Ports[0]"}},
		{"geo ok", Spec{Geo: []GeoRule{{Proto: "udp", Ports: []PortRange{Port(5060)}, Countries: []string{"fr"}}}}, nil},
		{"geo too many", Spec{Geo: make([]GeoRule, MaxGeoRules+1)}, []string{"Geo: 33 rules, at most 32"}},
		{"geo bad rule", Spec{Geo: []GeoRule{{Proto: "sctp", Countries: []string{"FRA", "F1", ""}}}},
			[]string{"Geo[0].Proto", "Geo[0].Ports: no port", `Geo[0].Countries[0]: "FRA"`, "Geo[0].Countries[1]", "Geo[0].Countries[2]"}},
		{"geo bad ports", Spec{Geo: []GeoRule{{Ports: []PortRange{Port(1), {0, 5}, {9, 8}}}}},
			[]string{"Geo[0].Ports[1]: port 0", "Geo[0].Ports[2]: range 9-8", "Geo[0].Countries: no country"}},
		{"geo bad prefixes", Spec{Geo: []GeoRule{{Ports: []PortRange{Port(1)}, Countries: []string{"DE"},
			V4: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32"), {}},
			V6: pfx("192.0.2.0/24", "::ffff:192.0.2.0/120", "2001:db8::/32")}}},
			[]string{"Geo[0].V4[0]: 2001:db8::/32 is not an IPv4 prefix", "Geo[0].V4[1]: invalid prefix",
				"Geo[0].V6[0]: 192.0.2.0/24 is not an IPv6 prefix", "Geo[0].V6[1]: ::ffff:192.0.2.0/120 is not an IPv6"}},
		{"geo too big", Spec{Geo: []GeoRule{{Ports: []PortRange{Port(1)}, Countries: []string{"DE"}, V6: make([]netip.Prefix, MaxGeoElements+1)}}},
			[]string{"Geo[0].V6: 1000001 networks, at most 1000000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.spec.Validate()
			if tc.wants == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate = %v, want ErrInvalidSpec", err)
			}
			for _, w := range tc.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if out, rerr := Render(tc.spec); rerr == nil || out != "" {
				t.Errorf("Render of an invalid spec = %q, %v", out, rerr)
			}
		})
	}
}

func TestIntervals(t *testing.T) {
	tests := []struct {
		name string
		in   []netip.Prefix
		want []string
	}{
		{"none", nil, []string{}},
		{"adjacent make a prefix", pfx("192.0.2.0/25", "192.0.2.128/25"), []string{"192.0.2.0/24"}},
		{"adjacent make a range", pfx("192.0.2.0/25", "192.0.2.128/26"), []string{"192.0.2.0-192.0.2.191"}},
		{"contained", pfx("10.0.0.0/8", "10.1.2.3/32", "10.255.0.0/16"), []string{"10.0.0.0/8"}},
		{"unsorted, host, gap", pfx("198.51.100.7/32", "192.0.2.0/24", "198.51.100.9/32"), []string{"192.0.2.0/24", "198.51.100.7", "198.51.100.9"}},
		{"unmasked", pfx("192.0.2.77/24"), []string{"192.0.2.0/24"}},
		{"ipv6", pfx("2001:db8::/33", "2001:db8:8000::/33", "2001:db9::1/128"), []string{"2001:db8::/32", "2001:db9::1"}},
		{"everything", pfx("0.0.0.0/1", "128.0.0.0/1"), []string{"0.0.0.0/0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := intervals(tc.in); !slices.Equal(got, tc.want) {
				t.Errorf("intervals(%v) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestGeoRenderDeterministic: the order of a rule's prefixes and countries
// does not change the script.
func TestGeoRenderDeterministic(t *testing.T) {
	var base Spec
	for _, g := range goldenSpecs {
		if g.name == "geo-deny" {
			base = g.spec
		}
	}
	want, err := Render(base)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 20 {
		s := base
		g := base.Geo[0]
		g.V4, g.V6, g.Countries = slices.Clone(g.V4), slices.Clone(g.V6), slices.Clone(g.Countries)
		rng.Shuffle(len(g.V4), func(a, b int) { g.V4[a], g.V4[b] = g.V4[b], g.V4[a] })
		rng.Shuffle(len(g.V6), func(a, b int) { g.V6[a], g.V6[b] = g.V6[b], g.V6[a] })
		rng.Shuffle(len(g.Countries), func(a, b int) { g.Countries[a], g.Countries[b] = g.Countries[b], g.Countries[a] })
		s.Geo = []GeoRule{g}
		if got, _ := Render(s); got != want {
			t.Fatalf("shuffle %d renders differently:\n%s", i, Diff(want, got))
		}
	}
}

// TestGeoRuleText checks the rule lines for each protocol and mode.
func TestGeoRuleText(t *testing.T) {
	tests := []struct {
		rule GeoRule
		want []string
	}{
		{GeoRule{Ports: []PortRange{Port(5061), Port(5060)}, Countries: []string{"CN"}, V4: pfx("192.0.2.0/24")},
			[]string{"meta l4proto { tcp, udp } th dport 5060-5061 ip saddr @geo0_4 drop", "meta l4proto { tcp, udp } th dport 5060-5061 ip6 saddr @geo0_6 drop",
				"# No IPv6 network is located in CN: this rule drops no IPv6 source."}},
		{GeoRule{Proto: "tcp", Ports: []PortRange{Port(443), Port(80)}, Allow: true, Countries: []string{"de", "AT"}, V6: pfx("2001:db8::/32")},
			[]string{"tcp dport { 80, 443 } ip saddr != @geo0_4 drop", "tcp dport { 80, 443 } ip6 saddr != @geo0_6 drop",
				"# Rule 0: allow AT, DE on tcp { 80, 443 }: sources located elsewhere, or not located, are dropped.",
				"# No IPv4 network is located in AT, DE: every IPv4 source is dropped on these ports."}},
		{GeoRule{Proto: "udp", Ports: []PortRange{{10000, 20000}}, Countries: []string{"RU"}, V4: pfx("192.0.2.0/24"), V6: pfx("2001:db8::/32")},
			[]string{"udp dport 10000-20000 ip saddr @geo0_4 drop", "# Rule 0: deny RU on udp 10000-20000: sources located there are dropped."}},
	}
	for _, tc := range tests {
		t.Run(tc.want[0], func(t *testing.T) {
			got, err := Render(Spec{Geo: []GeoRule{tc.rule}})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, "\t\t"+w+"\n") {
					t.Errorf("script lacks %q", w)
				}
			}
			if strings.Contains(got, "No IPv") != strings.Contains(strings.Join(tc.want, "\n"), "No IPv") {
				t.Errorf("unexpected empty-family comment")
			}
		})
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		ok   bool
	}{
		{"5060", Port(5060), true},
		{"10000-20000", PortRange{10000, 20000}, true},
		{" 1 - 2 ", PortRange{1, 2}, true},
		{"0", PortRange{}, false},
		{"65536", PortRange{}, false},
		{"20-10", PortRange{}, false},
		{"a-b", PortRange{}, false},
		{"", PortRange{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParsePortRange(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("ParsePortRange(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
			}
			if tc.ok {
				if back, _ := ParsePortRange(got.String()); back != got {
					t.Errorf("round trip %v -> %q -> %v", got, got.String(), back)
				}
			}
		})
	}
}

func TestMergeRanges(t *testing.T) {
	got := mergeRanges([]PortRange{{10, 20}, Port(5), {21, 30}, Port(65535), {65000, 65535}, {15, 16}, Port(7)})
	want := []PortRange{Port(5), Port(7), {10, 30}, {65000, 65535}}
	if !slices.Equal(got, want) {
		t.Errorf("mergeRanges = %v, want %v", got, want)
	}
}

func TestSplitPrefixes(t *testing.T) {
	v4, v6 := splitPrefixes(pfx("10.1.2.3/8", "10.200.0.0/16", "10.0.0.1/32", "11.0.0.0/8", "::ffff:192.0.2.1/128",
		"2001:db8::1/32", "2001:db8:1::/48", "fe80::1/64", "::ffff:0:0/95"))
	if want := pfx("10.0.0.0/8", "11.0.0.0/8", "192.0.2.1/32"); !slices.Equal(v4, want) {
		t.Errorf("v4 = %v, want %v", v4, want)
	}
	if want := pfx("::fffe:0:0/95", "2001:db8::/32", "fe80::/64"); !slices.Equal(v6, want) {
		t.Errorf("v6 = %v, want %v", v6, want)
	}
}

func TestRolesTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range Roles() {
		if seen[r.Role] {
			t.Errorf("role %q twice", r.Role)
		}
		seen[r.Role] = true
		if len(r.Open) == 0 {
			t.Errorf("role %q opens nothing", r.Role)
		}
	}
	for _, name := range []string{RoleSIP, RoleSIPTLS, RoleWeb, RoleProvisioning, RoleAdmin, RoleTURN, RoleLDAP, RoleSSH} {
		if !seen[name] {
			t.Errorf("role %q missing from Roles()", name)
		}
	}
	// Each role's ports appear in the script for a spec with only that role.
	for _, r := range Roles() {
		s := Spec{Roles: []string{r.Role}}
		if r.Role == RoleTURN {
			s.TURNRelay = &PortRange{40000, 40100}
		}
		if r.Role == RoleAdmin {
			s.AdminFrom = pfx("192.0.2.0/24")
		}
		out, err := Render(s)
		if err != nil {
			t.Fatalf("%s: %v", r.Role, err)
		}
		for _, o := range r.Open {
			if !strings.Contains(out, o.Ports.String()) {
				t.Errorf("role %s: port %s/%s not in script", r.Role, o.Ports, o.Proto)
			}
		}
	}
}

func TestUninstall(t *testing.T) {
	u := Uninstall()
	if !strings.Contains(u, "delete table inet pbxgate\n") || strings.Contains(u, "ruleset") || strings.Contains(u, "pbxgate_bl") {
		t.Errorf("Uninstall = %q", u)
	}
}
