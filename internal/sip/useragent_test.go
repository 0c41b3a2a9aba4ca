package sip

import (
	"errors"
	"strings"
	"testing"
)

func TestUAMatcherDefault(t *testing.T) {
	m, err := NewUAMatcher(DefaultScannerAgents)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ua, want string // want "" means no match
	}{
		// Scanners, as seen in the wild.
		{"friendly-scanner", "friendly-scanner"},
		{"Friendly-Scanner 0.9", "friendly-scanner"},
		{"friendly-request", "friendly-request"},
		{"sipvicious/0.3.4", "sipvicious"},
		{"sipcli/v1.8", "sipcli"},
		{"SIP-Scan 2.1", "sip-scan"},
		{"sipscan", "sipscan"},
		{"sipptk", "sipptk"},
		{"pplsip", "pplsip"},
		{"iWar", "iwar"},
		{"sundayddr", "sundayddr"},
		{"siparmyknife 1.0", "siparmyknife"},
		{"SIVuS", "sivus"},
		{"VaxSIPUserAgent/3.1", "vaxsipuseragent"},
		{"VaxIPUserAgent/3.1", "vaxipuseragent"},
		{"Mozilla/5.0 sipvicious friendly-scanner", "sipvicious"}, // earliest in the UA wins
		// Real phones, PBXs and tools that must pass.
		{"Yealink SIP-T46U 108.86.0.20", ""},
		{"Grandstream GXP2170 1.0.11.23", ""},
		{"Z 5.6.4 v2.10.20.3", ""},
		{"Linphone/5.2.0 (belle-sip/5.2.0)", ""},
		{"sipsak 0.9.8", ""},
		{"Ozeki VoIP SIP SDK v10", ""},
		{"PortSIP VoIP SDK 16.2", ""},
		{"Asterisk PBX 20.5.0", ""},
		{"FPBX-16.0.40(18.20.0)", ""},
		{"Cisco-SIPGateway/IOS-15.x", ""},
		{"MicroSIP/3.21.3", ""},
		{"friendly", ""},
		{"sip-sca", ""}, // prefix of a pattern at the end of the UA
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.ua, func(t *testing.T) {
			got, ok := m.Match([]byte(tt.ua))
			if ok != (tt.want != "") || got != tt.want {
				t.Errorf("Match(%q) = %q, %v; want %q", tt.ua, got, ok, tt.want)
			}
		})
	}
}

func TestUAMatcherConfigured(t *testing.T) {
	m, err := NewUAMatcher([]string{"Evil Dialer", "x-"})
	if err != nil {
		t.Fatal(err)
	}
	for ua, want := range map[string]string{
		"EVIL DIALER 2":    "Evil Dialer", // returned as configured
		"my evil dialer":   "Evil Dialer",
		"evil  dialer":     "",
		"foo X-bar":        "x-",
		"friendly-scanner": "", // defaults are not implied
	} {
		got, ok := m.Match([]byte(ua))
		if ok != (want != "") || got != want {
			t.Errorf("Match(%q) = %q, %v; want %q", ua, got, ok, want)
		}
	}
	if p := m.Patterns(); len(p) != 2 || p[0] != "Evil Dialer" {
		t.Errorf("Patterns() = %q", p)
	}
	m.Patterns()[0] = "changed"
	if m.Patterns()[0] != "Evil Dialer" {
		t.Error("Patterns() exposes the matcher's slice")
	}

	var zero UAMatcher
	var nilM *UAMatcher
	for _, mm := range []*UAMatcher{&zero, nilM} {
		if p, ok := mm.Match([]byte("friendly-scanner")); ok {
			t.Errorf("empty matcher matched %q", p)
		}
	}
	empty, err := NewUAMatcher(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := empty.Match([]byte("x")); ok {
		t.Error("matcher without patterns matched")
	}
}

func TestNewUAMatcherErrors(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		problems int
	}{
		{"empty", []string{""}, 1},
		{"too long", []string{strings.Repeat("a", MaxUAPatternLen+1)}, 1},
		{"control", []string{"a\tb"}, 1},
		{"CRLF", []string{"a\r\n"}, 1},
		{"non-ASCII", []string{"sipvic\xc3\xb6us"}, 1},
		{"duplicate ignoring case", []string{"sipcli", "SIPcli"}, 1},
		{"all reported at once", []string{"", "ok", "\x00", "OK"}, 3},
		{"too many", make([]string, MaxUAPatterns+1), MaxUAPatterns + 2}, // count + every empty one
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := NewUAMatcher(tt.patterns)
			if err == nil || m != nil {
				t.Fatalf("NewUAMatcher(%q) = %v, nil error", tt.patterns, m)
			}
			if !errors.Is(err, ErrUAPattern) {
				t.Fatalf("error %v does not wrap ErrUAPattern", err)
			}
			if n := strings.Count(err.Error(), ErrUAPattern.Error()); n != tt.problems {
				t.Fatalf("%d problems reported, want %d: %v", n, tt.problems, err)
			}
		})
	}
	// Exactly at the limits is fine.
	if _, err := NewUAMatcher([]string{strings.Repeat("~", MaxUAPatternLen), " "}); err != nil {
		t.Fatal(err)
	}
}

// TestUAMatcherNaive compares Match with a straightforward implementation
// on UAs built from pattern fragments.
func TestUAMatcherNaive(t *testing.T) {
	m, err := NewUAMatcher(DefaultScannerAgents)
	if err != nil {
		t.Fatal(err)
	}
	x := uint64(1)
	next := func(n int) int { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return int(x % uint64(n)) }
	for range 5000 {
		var b strings.Builder
		for range next(6) {
			p := DefaultScannerAgents[next(len(DefaultScannerAgents))]
			i, j := next(len(p)), next(len(p)+1)
			if i > j {
				i, j = j, i
			}
			if next(2) == 0 {
				p = strings.ToUpper(p)
			}
			b.WriteString(p[i:j])
			b.WriteString([]string{"", " ", "/", "-"}[next(4)])
		}
		ua := b.String()
		got, ok := m.Match([]byte(ua))
		want, wok := naiveMatch(DefaultScannerAgents, ua)
		if ok != wok || got != want {
			t.Fatalf("Match(%q) = %q, %v; naive %q, %v", ua, got, ok, want, wok)
		}
	}
}

func naiveMatch(patterns []string, ua string) (string, bool) {
	best, at := "", -1
	l := strings.ToLower(ua)
	for _, p := range patterns {
		if i := strings.Index(l, strings.ToLower(p)); i >= 0 && (at < 0 || i < at) {
			best, at = p, i
		}
	}
	return best, at >= 0
}

func TestUAMatcherAllocs(t *testing.T) {
	m, err := NewUAMatcher(DefaultScannerAgents)
	if err != nil {
		t.Fatal(err)
	}
	for _, ua := range []string{benchUA, "friendly-scanner"} {
		b := []byte(ua)
		if a := testing.AllocsPerRun(100, func() { m.Match(b) }); a != 0 {
			t.Errorf("Match(%q) allocates %v times", ua, a)
		}
	}
}

// benchUA is a ~100-byte legitimate User-Agent that matches nothing.
const benchUA = "Yealink SIP-T46U 108.86.0.20 (Linux; ARM) friendly phone software; sip stack 3.2.1 build 20241105"

func BenchmarkUAMatcher(b *testing.B) {
	m, err := NewUAMatcher(DefaultScannerAgents)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, ua string }{{"miss-100B", benchUA}, {"hit", "sipcli/v1.8"}} {
		ua := []byte(c.ua)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(ua)))
			for b.Loop() {
				m.Match(ua)
			}
		})
	}
}
