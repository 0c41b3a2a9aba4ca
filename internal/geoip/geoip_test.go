package geoip

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"

	"github.com/pbxgate/pbxgate/internal/geoip/geoiptest"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// openDB writes d to a file in a temporary directory and opens it.
func openDB(t testing.TB, d geoiptest.DB) *DB {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.mmdb")
	if err := d.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// mixed is an IPv6 Country database with IPv4 aliasing, as MaxMind builds
// them, plus records of other shapes.
var mixed = geoiptest.DB{Networks: []geoiptest.Network{
	{Prefix: "10.98.2.0/24", Data: geoiptest.Country("FR")},
	{Prefix: "10.98.3.0/24", Data: geoiptest.Country("FR")},           // merges with .2 into a /23
	{Prefix: "10.98.4.0/25", Data: geoiptest.City("FR", "Paris")},     // a City record, adjacent to .3
	{Prefix: "10.98.5.0/24", Data: geoiptest.Country("DE")},           //
	{Prefix: "10.98.6.0/24", Data: geoiptest.RegisteredOnly("FR")},    // anycast: not located
	{Prefix: "10.98.7.0/24", Data: geoiptest.ASN(64500, "Example")},   // no country: not located
	{Prefix: "10.98.8.0/24", Data: geoiptest.Country("fr")},           // lower case in the data
	{Prefix: "10.98.9.0/24", Data: geoiptest.Country("FRA")},          // not a code: not located
	{Prefix: "fd98::/64", Data: geoiptest.Country("FR")},              //
	{Prefix: "fd98:0:0:1::/64", Data: geoiptest.Country("DE")},        //
	{Prefix: "2001:db8::/32", Data: geoiptest.City("FR", "Lyon")},     //
	{Prefix: "2001:db8:1::/48", Data: geoiptest.RegisteredOnly("FR")}, // a hole in the /32
}}

func TestSelect(t *testing.T) {
	db := openDB(t, mixed)
	got, stats, err := db.Select(context.Background(), []string{"FR"}, []string{"de"}, []string{"FR", "DE", "fr"}, nil, []string{"US"})
	if err != nil {
		t.Fatal(err)
	}
	fr6 := pfx("2001:db8::/48", "2001:db8:2::/47", "2001:db8:4::/46", "2001:db8:8::/45", "2001:db8:10::/44",
		"2001:db8:20::/43", "2001:db8:40::/42", "2001:db8:80::/41", "2001:db8:100::/40", "2001:db8:200::/39",
		"2001:db8:400::/38", "2001:db8:800::/37", "2001:db8:1000::/36", "2001:db8:2000::/35", "2001:db8:4000::/34",
		"2001:db8:8000::/33", "fd98::/64")
	want := []Networks{
		{V4: pfx("10.98.2.0/23", "10.98.4.0/25", "10.98.8.0/24"), V6: fr6},
		{V4: pfx("10.98.5.0/24"), V6: pfx("fd98:0:0:1::/64")},
		{V4: pfx("10.98.2.0/23", "10.98.4.0/25", "10.98.5.0/24", "10.98.8.0/24"), V6: append(slices.Clone(fr6[:len(fr6)-1]), pfx("fd98::/63")...)},
		{},
		{},
	}
	for i := range want {
		if !slices.Equal(got[i].V4, want[i].V4) || !slices.Equal(got[i].V6, want[i].V6) {
			t.Errorf("group %d = %v %v\nwant %v %v", i, got[i].V4, got[i].V6, want[i].V4, want[i].V6)
		}
	}
	for _, n := range got {
		for _, p := range n.V6 {
			for _, alias := range pfx("::ffff:0:0/96", "2001::/32", "2002::/16", "::/96") {
				if alias.Overlaps(p) {
					t.Errorf("V6 %v overlaps the IPv4 alias %v: IPv4 counted twice", p, alias)
				}
			}
		}
	}
	// The writer merges sibling networks with the same record, so the
	// counts are of the tree: FR has 10.98.2.0/23, .4, .8, fd98::/64 and
	// the 16 pieces of 2001:db8::/32 around the hole.
	wantStats := Stats{Networks: 26, Unlocated: 4, ByCountry: map[string]int{"FR": 20, "DE": 2, "US": 0}}
	if stats.Networks != wantStats.Networks || stats.Unlocated != wantStats.Unlocated || !mapsEqual(stats.ByCountry, wantStats.ByCountry) {
		t.Errorf("stats = %+v, want %+v", stats, wantStats)
	}
	differential(t, db, []string{"FR"}, got[0])
	differential(t, db, []string{"DE", "FR"}, got[2])
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// differential checks n against the reader's own Lookup: the first, last
// and a middle address of every prefix are located in one of codes, and so
// are the addresses just outside each prefix only if they are in n too.
func differential(t *testing.T, db *DB, codes []string, n Networks) {
	t.Helper()
	var b netipx.IPSetBuilder
	for _, p := range slices.Concat(n.V4, n.V6) {
		b.AddPrefix(p)
	}
	set, err := b.IPSet()
	if err != nil {
		t.Fatal(err)
	}
	in := func(a netip.Addr) bool {
		var iso string
		if err := db.r.Lookup(a).DecodePath(&iso, "country", "iso_code"); err != nil {
			t.Fatalf("Lookup(%v): %v", a, err)
		}
		return slices.Contains(codes, strings.ToUpper(iso)) && len(iso) == 2
	}
	for _, p := range slices.Concat(n.V4, n.V6) {
		r := netipx.RangeOfPrefix(p)
		for _, a := range []netip.Addr{r.From(), r.To(), midpoint(r)} {
			if !in(a) {
				t.Errorf("%v (in %v) is not located in %v by Lookup", a, p, codes)
			}
		}
		for _, a := range []netip.Addr{r.From().Prev(), r.To().Next()} {
			if !a.IsValid() || (db.r.Metadata.IPVersion == 4 && a.Is6()) {
				continue
			}
			if a.Is6() && mapped96.Contains(a) {
				continue
			}
			if in(a) != set.Contains(a) {
				t.Errorf("%v next to %v: located in %v = %v, in the result = %v", a, p, codes, in(a), set.Contains(a))
			}
		}
	}
}

func midpoint(r netipx.IPRange) netip.Addr {
	a, b := r.From().As16(), r.To().As16()
	var m [16]byte
	carry := 0
	for i := 15; i >= 0; i-- { // (a+b)/2 without overflow: a + (b-a)/2 is enough here
		s := int(a[i]) + int(b[i]) + carry
		m[i], carry = byte(s), s>>8
	}
	// halve the 129-bit sum
	for i := range 16 {
		hi := carry
		carry = int(m[i]) & 1
		m[i] = byte(hi<<7) | m[i]>>1
	}
	addr := netip.AddrFrom16(m)
	if r.From().Is4() {
		addr = addr.Unmap()
	}
	return addr
}

func TestSelectUnaliased(t *testing.T) {
	// Built without aliasing: data under ::ffff:0:0/96 is its own, and
	// IPv4 lookups never read it; 6to4 data is real IPv6 data.
	db := openDB(t, geoiptest.DB{DisableIPv4Aliasing: true, Networks: []geoiptest.Network{
		{Prefix: "10.98.1.0/24", Data: geoiptest.Country("DE")},
		{Prefix: "::ffff:10.98.1.0/120", Data: geoiptest.Country("FR")},
		{Prefix: "::ffff:10.98.9.0/120", Data: geoiptest.Country("FR")},
		{Prefix: "2002:a62:900::/40", Data: geoiptest.Country("FR")},
	}})
	got, _, err := db.Select(context.Background(), []string{"FR"}, []string{"DE"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0].V4) != 0 || !slices.Equal(got[0].V6, pfx("2002:a62:900::/40")) {
		t.Errorf("FR = %v %v, want no IPv4 (the ::ffff data is never looked up) and the 6to4 /40", got[0].V4, got[0].V6)
	}
	if !slices.Equal(got[1].V4, pfx("10.98.1.0/24")) || len(got[1].V6) != 0 {
		t.Errorf("DE = %v %v", got[1].V4, got[1].V6)
	}
	differential(t, db, []string{"FR"}, got[0])
	differential(t, db, []string{"DE"}, got[1])
}

func TestSelectAboveIPv4Subtree(t *testing.T) {
	// A record for ::/64 holds the whole IPv4 subtree (::/96).
	db := openDB(t, geoiptest.DB{DisableIPv4Aliasing: true, Networks: []geoiptest.Network{
		{Prefix: "::/64", Data: geoiptest.Country("FR")},
	}})
	got, _, err := db.Select(context.Background(), []string{"FR"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0].V4, pfx("0.0.0.0/0")) || !slices.Equal(got[0].V6, pfx("::/64")) {
		t.Errorf("FR = %v %v, want 0.0.0.0/0 and ::/64", got[0].V4, got[0].V6)
	}
	differential(t, db, []string{"FR"}, got[0])
}

func TestSelectIPv4Database(t *testing.T) {
	db := openDB(t, geoiptest.DB{IPVersion: 4, Networks: []geoiptest.Network{
		{Prefix: "10.98.0.0/24", Data: geoiptest.Country("FR")},
		{Prefix: "10.98.1.0/24", Data: geoiptest.Country("FR")},
		{Prefix: "192.0.2.0/24", Data: geoiptest.Country("DE")},
	}})
	if info := db.Info(); info.IPVersion != 4 || info.Type != "GeoLite2-Country" || info.Built.IsZero() {
		t.Errorf("Info = %+v", info)
	}
	got, _, err := db.Select(context.Background(), []string{"FR"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0].V4, pfx("10.98.0.0/23")) || len(got[0].V6) != 0 {
		t.Errorf("FR = %v %v", got[0].V4, got[0].V6)
	}
}

// TestSelectSynthetic checks a database of 20k networks against Lookup:
// every selected prefix, and random addresses.
func TestSelectSynthetic(t *testing.T) {
	db := openDB(t, geoiptest.Synthetic(20000, 7))
	codes := []string{geoiptest.Code(147), geoiptest.Code(82), geoiptest.Code(3)}
	got, stats, err := db.Select(context.Background(), codes[:1], codes)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Networks < 19000 || stats.Unlocated != 0 || stats.ByCountry["FR"] == 0 {
		t.Errorf("stats = %+v", stats)
	}
	for gi, g := range [][]string{codes[:1], codes} {
		n := got[gi]
		if len(n.V4) == 0 || len(n.V6) == 0 {
			t.Fatalf("group %v selected %d+%d prefixes", g, len(n.V4), len(n.V6))
		}
		checkCanonical(t, n)
		differential(t, db, g, n)
	}
	// Random addresses: in the result exactly when Lookup locates them in
	// the group.
	var b netipx.IPSetBuilder
	for _, p := range slices.Concat(got[1].V4, got[1].V6) {
		b.AddPrefix(p)
	}
	set, _ := b.IPSet()
	rng := rand.New(rand.NewPCG(3, 4))
	hits := 0
	for range 20000 {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{byte(rng.IntN(100) + 1), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))})
		} else {
			var b16 [16]byte
			b16[0], b16[1], b16[2] = 0x24, 0, byte(rng.UintN(4))
			for i := 3; i < 16; i++ {
				b16[i] = byte(rng.UintN(256))
			}
			a = netip.AddrFrom16(b16)
		}
		var iso string
		if err := db.r.Lookup(a).DecodePath(&iso, "country", "iso_code"); err != nil {
			t.Fatal(err)
		}
		want := slices.Contains(codes, iso)
		if want {
			hits++
		}
		if set.Contains(a) != want {
			t.Fatalf("%v: Lookup says %q, in the result = %v", a, iso, set.Contains(a))
		}
	}
	if hits == 0 {
		t.Error("no random address hit the group: the check proves nothing")
	}
}

// checkCanonical: sorted, disjoint, not adjacent-mergeable into one prefix,
// families apart.
func checkCanonical(t *testing.T, n Networks) {
	t.Helper()
	for fam, ps := range map[string][]netip.Prefix{"v4": n.V4, "v6": n.V6} {
		for i, p := range ps {
			if p != p.Masked() || p.Addr().Is4() != (fam == "v4") || p.Addr().Is4In6() {
				t.Fatalf("%s[%d] = %v", fam, i, p)
			}
			if i > 0 {
				prev := netipx.RangeOfPrefix(ps[i-1])
				if prev.To().Compare(p.Addr()) >= 0 {
					t.Fatalf("%s: %v then %v: not sorted and disjoint", fam, ps[i-1], p)
				}
				if p.Bits() == ps[i-1].Bits() && p.Bits() > 0 && prev.To().Next() == p.Addr() {
					if q, _ := ps[i-1].Addr().Prefix(p.Bits() - 1); q.Addr() == ps[i-1].Addr() {
						t.Fatalf("%s: %v and %v should have merged", fam, ps[i-1], p)
					}
				}
			}
		}
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.mmdb")); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.mmdb") {
		t.Errorf("Open(missing) = %v, want fs.ErrNotExist naming the file", err)
	}
	for name, content := range map[string][]byte{
		"empty":   nil,
		"text":    []byte("this is not a MaxMind database\n"),
		"garbage": []byte(strings.Repeat("\xab\xcd\xefMaxMind.com", 100)),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		if db, err := Open(path); !errors.Is(err, ErrNotMMDB) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v, want ErrNotMMDB naming the file", name, err)
			if db != nil {
				_ = db.Close()
			}
		}
		if _, err := FromBytes(content); !errors.Is(err, ErrNotMMDB) {
			t.Errorf("FromBytes(%s) = %v, want ErrNotMMDB", name, err)
		}
	}

	asn := openDB(t, geoiptest.DB{Type: "GeoLite2-ASN", Networks: []geoiptest.Network{
		{Prefix: "192.0.2.0/24", Data: geoiptest.ASN(64500, "Example")},
		{Prefix: "2001:db8::/32", Data: geoiptest.ASN(64501, "Example6")},
	}})
	if _, _, err := asn.Select(context.Background(), []string{"FR"}); !errors.Is(err, ErrNoCountryData) || !strings.Contains(err.Error(), "GeoLite2-ASN") {
		t.Errorf("Select on an ASN database = %v, want ErrNoCountryData naming the type", err)
	}
	empty := openDB(t, geoiptest.DB{})
	if _, _, err := empty.Select(context.Background(), []string{"FR"}); !errors.Is(err, ErrNoCountryData) {
		t.Errorf("Select on an empty database = %v, want ErrNoCountryData", err)
	}

	db := openDB(t, mixed)
	_, _, err := db.Select(context.Background(), []string{"FR", "FRA"}, []string{"", "1A", "de"}, []string{"É"})
	if !errors.Is(err, ErrBadCountry) {
		t.Fatalf("Select(bad codes) = %v", err)
	}
	for _, w := range []string{`"FRA"`, `""`, `"1A"`, `"É"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := db.Select(ctx, []string{"FR"}); !errors.Is(err, context.Canceled) {
		t.Errorf("Select(cancelled) = %v", err)
	}

	db.maxNetworks = 5
	if _, _, err := db.Select(context.Background(), []string{"FR"}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Select over the bound = %v, want ErrTooLarge", err)
	}
	db.maxNetworks = MaxNetworks

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, _, err := db.Select(context.Background(), []string{"FR"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Select after Close = %v", err)
	}
	if info := db.Info(); info != (Info{}) {
		t.Errorf("Info after Close = %+v", info)
	}
}

func TestParseCode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{{"FR", "FR", true}, {"fr", "FR", true}, {"fR", "FR", true}, {"F", "", false}, {"FRA", "", false},
		{"F1", "", false}, {"F ", "", false}, {"", "", false}, {"\xc3\x89", "", false}, {"[]", "", false}, {"@Z", "", false}} {
		c, ok := parseCode(tc.in)
		if ok != tc.ok || (ok && c.String() != tc.want) {
			t.Errorf("parseCode(%q) = %q, %v", tc.in, c, ok)
		}
	}
}

// TestSelectOddRecords: records of other shapes (a string, a country that
// is not a map, an iso_code that is not a string, an array) are not
// located, and do not stop the walk.
func TestSelectOddRecords(t *testing.T) {
	b, err := geoiptest.DB{Networks: []geoiptest.Network{
		{Prefix: "192.0.2.0/26", Data: mmdbtype.String("FR")},
		{Prefix: "192.0.2.64/26", Data: mmdbtype.Map{"country": mmdbtype.String("FR")}},
		{Prefix: "192.0.2.128/26", Data: mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.Uint32(5)}}},
		{Prefix: "192.0.2.192/26", Data: mmdbtype.Slice{mmdbtype.String("FR")}},
		{Prefix: "198.51.100.0/24", Data: geoiptest.Country("FR")},
	}}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	db, err := FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, stats, err := db.Select(context.Background(), []string{"FR"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got[0].V4, pfx("198.51.100.0/24")) || stats.Unlocated != 4 {
		t.Errorf("got %v, stats %+v", got[0].V4, stats)
	}
}

func BenchmarkSelect500k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "synthetic.mmdb")
	if err := geoiptest.Synthetic(500_000, 1).WriteFile(path); err != nil {
		b.Fatal(err)
	}
	db, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	all := make([][]string, geoiptest.SyntheticCountries)
	for i := range all {
		all[i] = []string{geoiptest.Code(i)}
	}
	for _, bc := range []struct {
		name   string
		groups [][]string
	}{
		{"one-country", [][]string{{"FR"}}},
		{"every-country-one-group-each", all},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got, stats, err := db.Select(context.Background(), bc.groups...)
				if err != nil || len(got) != len(bc.groups) || stats.Networks < 450_000 {
					b.Fatalf("%v %d %+v", err, len(got), stats.Networks)
				}
			}
		})
	}
}
