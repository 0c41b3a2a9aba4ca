package geoip

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"go4.org/netipx"

	"github.com/pbxgate/pbxgate/internal/geoip/geoiptest"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus in testdata/fuzz/FuzzSelect")

// seedDBs are small databases of every shape the package meets.
func seedDBs(t testing.TB) map[string][]byte {
	t.Helper()
	dbs := map[string]geoiptest.DB{
		"mixed": mixed,
		"unaliased": {DisableIPv4Aliasing: true, Networks: []geoiptest.Network{
			{Prefix: "10.98.1.0/24", Data: geoiptest.Country("DE")},
			{Prefix: "::ffff:10.98.1.0/120", Data: geoiptest.Country("FR")},
			{Prefix: "::/64", Data: geoiptest.Country("FR")},
		}},
		"ipv4": {IPVersion: 4, Networks: []geoiptest.Network{
			{Prefix: "10.98.0.0/24", Data: geoiptest.City("FR", "Paris")},
		}},
		"asn": {Type: "GeoLite2-ASN", Networks: []geoiptest.Network{
			{Prefix: "192.0.2.0/24", Data: geoiptest.ASN(64500, "Example")},
		}},
	}
	out := map[string][]byte{}
	for name, d := range dbs {
		b, err := d.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		out[name] = b
	}
	return out
}

// FuzzSelect feeds arbitrary bytes to FromBytes and Select: neither may
// panic or run unbounded, and what Select returns is canonical (sorted,
// disjoint, each family apart).
func FuzzSelect(f *testing.F) {
	seeds := seedDBs(f)
	if *updateSeeds {
		dir := filepath.Join("testdata", "fuzz", "FuzzSelect")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			f.Fatal(err)
		}
		for name, b := range seeds {
			// A truncated copy too: the metadata survives, the tree does not.
			for suffix, data := range map[string][]byte{"": b, "-truncated": truncateTree(b)} {
				content := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(data)))
				if err := os.WriteFile(filepath.Join(dir, "seed-"+name+suffix), []byte(content), 0o644); err != nil {
					f.Fatal(err)
				}
			}
		}
	}
	for _, b := range seeds {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		db, err := FromBytes(data)
		if err != nil {
			return
		}
		defer db.Close()
		db.maxNetworks = 1 << 16
		got, _, err := db.Select(context.Background(), []string{"FR"}, []string{"DE", "FR"})
		if err != nil {
			return
		}
		for _, n := range got {
			var b netipx.IPSetBuilder
			for i, p := range n.V4 {
				if !p.Addr().Is4() || (i > 0 && netipx.RangeOfPrefix(n.V4[i-1]).To().Compare(p.Addr()) >= 0) {
					t.Fatalf("V4 not canonical: %v", n.V4)
				}
				b.AddPrefix(p)
			}
			for i, p := range n.V6 {
				if !p.Addr().Is6() || p.Addr().Is4In6() || (i > 0 && netipx.RangeOfPrefix(n.V6[i-1]).To().Compare(p.Addr()) >= 0) {
					t.Fatalf("V6 not canonical: %v", n.V6)
				}
				b.AddPrefix(p)
			}
			if _, err := b.IPSet(); err != nil {
				t.Fatal(err)
			}
		}
		// The union group holds the single-country group.
		var all netipx.IPSetBuilder
		for _, p := range append(got[1].V4, got[1].V6...) {
			all.AddPrefix(p)
		}
		set, _ := all.IPSet()
		for _, p := range append(got[0].V4, got[0].V6...) {
			if !set.ContainsPrefix(p) {
				t.Fatalf("FR network %v missing from FR+DE", p)
			}
		}
	})
}

// truncateTree keeps the first 32 bytes of the tree and the metadata.
func truncateTree(b []byte) []byte {
	marker := []byte("\xab\xcd\xefMaxMind.com")
	for i := len(b) - len(marker); i >= 0; i-- {
		if string(b[i:i+len(marker)]) == string(marker) {
			return append(append([]byte{}, b[:min(32, i)]...), b[i:]...)
		}
	}
	return b
}
