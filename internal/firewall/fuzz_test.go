package firewall

import "testing"

// FuzzParsePortRange checks that parsing never panics and that every
// accepted range is valid and round-trips through String.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{"5060", "10000-20000", "0", "65535-1", "-", "1-", " 7 - 9 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			return
		}
		if r.Min == 0 || r.Max < r.Min {
			t.Fatalf("ParsePortRange(%q) accepted invalid %v", s, r)
		}
		back, err := ParsePortRange(r.String())
		if err != nil || back != r {
			t.Fatalf("round trip %q -> %v -> %q -> %v, %v", s, r, r.String(), back, err)
		}
	})
}
