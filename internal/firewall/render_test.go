package firewall

import (
	"errors"
	"flag"
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
			head := []string{"table inet pbxgate {}", "flush table inet pbxgate", "table inet pbxgate {"}
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
