package peerfilter

import (
	"net/netip"
	"testing"
)

// fuzzAllow is the allow list of the filter FuzzCheck exercises.
var fuzzAllow = []netip.Prefix{
	netip.MustParsePrefix("10.20.0.0/16"),
	netip.MustParsePrefix("fd00:1::/32"),
	netip.MustParsePrefix("8.0.0.0/8"), // allow over a non-denied range is harmless
}

// referenceCheck is the slow, obviously correct version of Check: loop over
// the allow list, then over the deny list picking the most specific match.
func referenceCheck(allow []netip.Prefix, a netip.Addr) (bool, string) {
	if !a.IsValid() {
		return false, "invalid address"
	}
	if a.Zone() != "" {
		return false, "address with zone"
	}
	a = a.Unmap()
	for _, p := range allow {
		if p.Contains(a) {
			return true, ""
		}
	}
	best := -1
	for i, r := range deniedRanges {
		if r.Prefix.Contains(a) && (best < 0 || r.Prefix.Bits() > deniedRanges[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return true, ""
	}
	return false, deniedRanges[best].Name + " " + deniedRanges[best].Prefix.String()
}

// FuzzCheck compares Check with referenceCheck on 16-byte (and 4-byte)
// addresses, with and without the allow list.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"::ffff:127.0.0.1", "::ffff:10.20.1.1", "2002:a00:1::", "fe80::1", "2606:4700::1111", "::"} {
		a := netip.MustParseAddr(s).As16()
		f.Add(a[:])
	}
	f.Add([]byte{10, 20, 1, 1})
	def, err := New(nil)
	if err != nil {
		f.Fatal(err)
	}
	allow, err := New(fuzzAllow)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		for _, c := range []struct {
			f     *Filter
			allow []netip.Prefix
		}{{def, nil}, {allow, fuzzAllow}} {
			gotOK, gotReason := c.f.Check(a)
			wantOK, wantReason := referenceCheck(c.allow, a)
			if gotOK != wantOK || gotReason != wantReason {
				t.Fatalf("Check(%s) allow=%v = %v %q, reference %v %q", a, c.allow, gotOK, gotReason, wantOK, wantReason)
			}
		}
	})
}
