package kernelbl

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestSubtract(t *testing.T) {
	h1, h2 := time.Unix(5000, 0), time.Unix(9000, 0)
	var never time.Time
	e := func(p string, exp time.Time) Entry { return Entry{Prefix: pfx(p), Expires: exp} }
	cases := []struct {
		name  string
		bans  []Entry
		holes []string
		want  []Entry
	}{
		{name: "empty"},
		{name: "no holes", bans: []Entry{e("10.0.0.1", h1), e("2001:db8::/32", never)},
			want: []Entry{e("10.0.0.1", h1), e("2001:db8::/32", never)}},
		{name: "host bits masked, sorted v4 first", bans: []Entry{e("2001:db8::1", h1), e("10.0.0.77/24", h1)},
			want: []Entry{e("10.0.0.0/24", h1), e("2001:db8::1", h1)}},
		{name: "ban inside hole disappears", bans: []Entry{e("10.0.0.5", h1), e("10.0.1.0/25", h2)}, holes: []string{"10.0.0.0/16"}},
		{name: "exact hole", bans: []Entry{e("10.0.0.5", h1)}, holes: []string{"10.0.0.5"}},
		{name: "hole elsewhere", bans: []Entry{e("10.0.0.5", h1)}, holes: []string{"10.0.0.6", "2001:db8::/32"},
			want: []Entry{e("10.0.0.5", h1)}},
		{name: "/32 carved out of /24", bans: []Entry{e("10.0.0.0/24", h1)}, holes: []string{"10.0.0.3"},
			want: []Entry{e("10.0.0.0/31", h1), e("10.0.0.2", h1), e("10.0.0.4/30", h1), e("10.0.0.8/29", h1),
				e("10.0.0.16/28", h1), e("10.0.0.32/27", h1), e("10.0.0.64/26", h1), e("10.0.0.128/25", h1)}},
		{name: "first and last address carved", bans: []Entry{e("10.0.0.0/30", never)}, holes: []string{"10.0.0.0", "10.0.0.3"},
			want: []Entry{e("10.0.0.1", never), e("10.0.0.2", never)}},
		{name: "adjacent holes merge", bans: []Entry{e("10.0.0.0/29", h1)}, holes: []string{"10.0.0.2/31", "10.0.0.4/31", "10.0.0.5"},
			want: []Entry{e("10.0.0.0/31", h1), e("10.0.0.6/31", h1)}},
		{name: "whole v4 space minus trusted", bans: []Entry{e("0.0.0.0/0", never)}, holes: []string{"128.0.0.0/1"},
			want: []Entry{e("0.0.0.0/1", never)}},
		{name: "last address of space", bans: []Entry{e("255.255.255.252/30", h1)}, holes: []string{"255.255.255.255"},
			want: []Entry{e("255.255.255.252/31", h1), e("255.255.255.254", h1)}},
		{name: "v6 /64 minus /65", bans: []Entry{e("fd98::/64", h2)}, holes: []string{"fd98::8000:0:0:0/65"},
			want: []Entry{e("fd98::/65", h2)}},
		{name: "v6 whole space minus ::1", bans: []Entry{e("::/0", h1)}, holes: []string{"::/127"},
			want: func() []Entry {
				var w []Entry
				for b := 127; b >= 1; b-- {
					// ::2/127, ::4/126, ... 8000::/1
					a := u128{}
					if s := 128 - b; s >= 64 {
						a.hi = 1 << (s - 64)
					} else {
						a.lo = 1 << s
					}
					w = append([]Entry{{Prefix: netip.PrefixFrom(a.addr(false), b), Expires: h1}}, w...)
				}
				// sorted by address: ::2/127 first.
				for i, j := 0, len(w)-1; i < j; i, j = i+1, j-1 {
					w[i], w[j] = w[j], w[i]
				}
				return w
			}()},
		{name: "families apart: v4 hole does not cut v6 ban", bans: []Entry{e("::/0", h1)}, holes: []string{"10.0.0.0/8"},
			want: []Entry{e("::/0", h1)}},
		{name: "mapped ban and mapped hole count as v4", bans: []Entry{{Prefix: netip.MustParsePrefix("::ffff:10.0.0.0/126"), Expires: h1}},
			holes: []string{"::ffff:10.0.0.1/128"},
			want:  []Entry{e("10.0.0.0", h1), e("10.0.0.2/31", h1)}},
		{name: "duplicate bans keep latest expiry", bans: []Entry{e("10.0.0.1", h1), e("10.0.0.1", h2), e("10.0.0.1", h1)},
			want: []Entry{e("10.0.0.1", h2)}},
		{name: "duplicate forever wins", bans: []Entry{e("10.0.0.1", h2), e("10.0.0.1", never)},
			want: []Entry{e("10.0.0.1", never)}},
		{name: "nested bans each keep expiry", bans: []Entry{e("10.0.0.0/30", h1), e("10.0.0.1", h2)}, holes: []string{"10.0.0.0"},
			want: []Entry{e("10.0.0.1", h1), e("10.0.0.2/31", h1), e("10.0.0.1", h2)}},
		{name: "invalid ignored", bans: []Entry{{Prefix: netip.Prefix{}, Expires: h1}, e("10.0.0.1", h1)},
			want: []Entry{e("10.0.0.1", h1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var holes []netip.Prefix
			for _, h := range c.holes {
				holes = append(holes, pfx(h))
			}
			holes = append(holes, netip.Prefix{}) // invalid: ignored
			got := Subtract(c.bans, holes)
			if fmtEntries(got) != fmtEntries(c.want) {
				t.Errorf("Subtract =\n%s\nwant\n%s", fmtEntries(got), fmtEntries(c.want))
			}
		})
	}
}

func fmtEntries(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		exp := "forever"
		if !e.Expires.IsZero() {
			exp = fmt.Sprint(e.Expires.Unix())
		}
		fmt.Fprintf(&b, "%v@%s ", e.Prefix, exp)
	}
	return b.String()
}

// TestSubtractBounded: many holes inside one big ban, and many nested bans
// around many holes, stay within the documented bound and finish quickly.
func TestSubtractBounded(t *testing.T) {
	var bans []Entry
	var holes []netip.Prefix
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7})
		holes = append(holes, netip.PrefixFrom(a, 32))
		for b := 8; b <= 31; b += 4 {
			bans = append(bans, Entry{Prefix: netip.PrefixFrom(a, b).Masked()})
		}
	}
	start := time.Now()
	out := Subtract(bans, holes)
	if bound := 256 * (len(bans) + 258*len(holes)); len(out) > bound {
		t.Fatalf("%d entries, over the bound %d", len(out), bound)
	}
	d := time.Since(start)
	if d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	t.Logf("%d bans, %d holes: %d parts in %v", len(bans), len(holes), len(out), d)
	addrs := make([]netip.Addr, len(holes)) // sorted: built in order
	for i, h := range holes {
		addrs[i] = h.Addr()
	}
	for _, e := range out {
		first := e.Prefix.Addr()
		last := lastOf(addrU128(first), e.Prefix.Bits(), true).addr(true)
		i := sort.Search(len(addrs), func(i int) bool { return addrs[i].Compare(first) >= 0 })
		if i < len(addrs) && addrs[i].Compare(last) <= 0 {
			t.Fatalf("%v overlaps hole %v", e.Prefix, addrs[i])
		}
	}
}

// FuzzSubtract checks Subtract against a brute-force model on IPv4: no part
// overlaps a hole or leaves its ban, every address probed near a boundary
// is covered by the parts exactly when a ban covers it and no hole does,
// with the latest expiry of the bans covering it; subtracting again changes
// nothing; and the size stays within the bound.
func FuzzSubtract(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 24, 1, 10, 0, 0, 3, 32, 0x80})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 128, 0, 0, 0, 1, 0x80, 10, 0, 0, 5, 32, 3})
	f.Add([]byte{10, 0, 0, 0, 30, 1, 10, 0, 0, 1, 32, 2, 10, 0, 0, 0, 32, 0x80})
	f.Fuzz(func(t *testing.T, data []byte) {
		var bans []Entry
		var holes []netip.Prefix
		for len(data) >= 6 && len(bans)+len(holes) < 48 {
			a := netip.AddrFrom4([4]byte{data[0], data[1], data[2], data[3]})
			p := netip.PrefixFrom(a, int(data[4])%33)
			if data[5]&0x80 != 0 {
				holes = append(holes, p)
			} else {
				var exp time.Time // 0 = forever
				if d := data[5] & 0x7f; d > 0 {
					exp = time.Unix(int64(d), 0)
				}
				bans = append(bans, Entry{Prefix: p, Expires: exp})
			}
			data = data[6:]
		}
		out := Subtract(bans, holes)
		if bound := 256 * (len(bans) + 258*len(holes)); len(out) > bound {
			t.Fatalf("%d entries, over the bound %d", len(out), bound)
		}
		for _, e := range out {
			if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || !e.Prefix.Addr().Is4() {
				t.Fatalf("bad part %v", e.Prefix)
			}
			for _, h := range holes {
				if e.Prefix.Overlaps(h) {
					t.Fatalf("part %v overlaps hole %v", e.Prefix, h)
				}
			}
			inBan := false
			for _, b := range bans {
				if b.Prefix.Masked().Bits() <= e.Prefix.Bits() && b.Prefix.Masked().Contains(e.Prefix.Addr()) && b.Expires.Equal(e.Expires) {
					inBan = true
				}
			}
			if !inBan {
				t.Fatalf("part %v@%v lies in no ban with its expiry", e.Prefix, e.Expires)
			}
		}
		model := func(a netip.Addr) (int64, bool) {
			for _, h := range holes {
				if h.Masked().Contains(a) {
					return 0, false
				}
			}
			var best int64
			found := false
			for _, b := range bans {
				if b.Prefix.Masked().Contains(a) {
					best, found = max(best, expKey(b.Expires)), true
				}
			}
			return best, found
		}
		got := func(a netip.Addr) (int64, bool) {
			var best int64
			found := false
			for _, e := range out {
				if e.Prefix.Contains(a) {
					best, found = max(best, expKey(e.Expires)), true
				}
			}
			return best, found
		}
		for _, p := range append(holes, func() []netip.Prefix {
			var ps []netip.Prefix
			for _, b := range bans {
				ps = append(ps, b.Prefix)
			}
			return ps
		}()...) {
			lo := addrU128(p.Masked().Addr())
			hi := lastOf(lo, p.Bits(), true)
			for _, x := range []u128{lo, hi, lo.dec(), hi.inc()} {
				if max4.less(x) {
					continue
				}
				a := x.addr(true)
				ge, gok := got(a)
				we, wok := model(a)
				if gok != wok || ge != we {
					t.Fatalf("address %v: covered=%v exp=%d, want covered=%v exp=%d\nbans %v holes %v\nout %s", a, gok, ge, wok, we, bans, holes, fmtEntries(out))
				}
			}
		}
		if again := Subtract(out, holes); len(again) > len(out) {
			t.Fatalf("subtracting again grew the list: %d -> %d", len(out), len(again))
		}
	})
}
