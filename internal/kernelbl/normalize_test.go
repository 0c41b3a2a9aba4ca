package kernelbl

import (
	"net/netip"
	"testing"
	"time"
)

func TestNormalize(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h1, h2 := now.Add(time.Hour), now.Add(2*time.Hour)
	type r struct {
		lo, hi string
		exp    time.Time // zero = forever
	}
	cases := []struct {
		name   string
		in     []Entry
		v4, v6 []r
		bad    int
	}{
		{name: "empty"},
		{name: "single /32", in: []Entry{{pfx("10.0.0.1"), h1}}, v4: []r{{"10.0.0.1", "10.0.0.1", h1}}},
		{name: "host bits masked", in: []Entry{{pfx("10.0.0.77/24"), time.Time{}}}, v4: []r{{"10.0.0.0", "10.0.0.255", time.Time{}}}},
		{name: "/32 inside longer-lived /24 dropped",
			in: []Entry{{pfx("10.0.0.0/24"), h2}, {pfx("10.0.0.5"), h1}},
			v4: []r{{"10.0.0.0", "10.0.0.255", h2}}},
		{name: "/32 outliving its /24 splits it",
			in: []Entry{{pfx("10.0.0.0/24"), h1}, {pfx("10.0.0.5"), time.Time{}}},
			v4: []r{{"10.0.0.0", "10.0.0.4", h1}, {"10.0.0.5", "10.0.0.5", time.Time{}}, {"10.0.0.6", "10.0.0.255", h1}}},
		{name: "adjacent same expiry merged",
			in: []Entry{{pfx("10.0.0.0/25"), h1}, {pfx("10.0.0.128/25"), h1}, {pfx("10.0.1.0"), h2}},
			v4: []r{{"10.0.0.0", "10.0.0.255", h1}, {"10.0.1.0", "10.0.1.0", h2}}},
		{name: "duplicate keeps latest", in: []Entry{{pfx("10.0.0.1"), h1}, {pfx("10.0.0.1"), h2}}, v4: []r{{"10.0.0.1", "10.0.0.1", h2}}},
		{name: "expired dropped", in: []Entry{{pfx("10.0.0.1"), now}, {pfx("10.0.0.2"), now.Add(-time.Second)}}},
		{name: "mapped goes to v4", in: []Entry{{pfx("::ffff:10.0.0.1"), h1}, {netip.MustParsePrefix("::ffff:10.0.0.0/120"), h1}},
			v4: []r{{"10.0.0.0", "10.0.0.255", h1}}},
		{name: "whole spaces", in: []Entry{{pfx("0.0.0.0/0"), time.Time{}}, {pfx("::/0"), h1}, {pfx("255.255.255.255"), h1}},
			v4: []r{{"0.0.0.0", "255.255.255.255", time.Time{}}},
			v6: []r{{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", h1}}},
		{name: "v6 /64 and /128", in: []Entry{{pfx("fd98::/64"), h1}, {pfx("fd98:0:0:1::1"), h1}},
			v6: []r{{"fd98::", "fd98::ffff:ffff:ffff:ffff", h1}, {"fd98:0:0:1::1", "fd98:0:0:1::1", h1}}},
		{name: "invalid counted", in: []Entry{{netip.Prefix{}, h1}}, bad: 1},
	}
	conv := func(rs []rng, v4 bool) []r {
		var out []r
		for _, x := range rs {
			var e time.Time
			if x.exp != forever {
				e = time.Unix(0, x.exp)
			}
			out = append(out, r{x.lo.addr(v4).String(), x.hi.addr(v4).String(), e})
		}
		return out
	}
	eq := func(a, b []r) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i].lo != b[i].lo || a[i].hi != b[i].hi || !a[i].exp.Equal(b[i].exp) {
				return false
			}
		}
		return true
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v4, v6, bad := normalize(c.in, now)
			if g := conv(v4, true); !eq(g, c.v4) {
				t.Errorf("v4 = %v, want %v", g, c.v4)
			}
			if g := conv(v6, false); !eq(g, c.v6) {
				t.Errorf("v6 = %v, want %v", g, c.v6)
			}
			if bad != c.bad {
				t.Errorf("bad = %d, want %d", bad, c.bad)
			}
		})
	}
}

// FuzzNormalize checks normalize against a brute-force model on a small
// slice of the address space: the output is sorted, disjoint, never two
// equal neighbours, and every probed address gets the latest expiry of the
// entries covering it.
func FuzzNormalize(f *testing.F) {
	f.Add([]byte{10, 0, 0, 1, 32, 1, 10, 0, 0, 0, 24, 0})
	f.Add([]byte{10, 0, 0, 0, 24, 1, 10, 0, 0, 5, 32, 0, 10, 0, 0, 128, 25, 2})
	f.Add([]byte{0, 0, 0, 0, 0, 3, 255, 255, 255, 255, 32, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		now := time.Unix(1000, 0)
		var in []Entry
		for len(data) >= 6 && len(in) < 64 {
			a := netip.AddrFrom4([4]byte{data[0], data[1], data[2], data[3]})
			bits := int(data[4]) % 33
			var exp time.Time // 0 = forever, else 1..255 s after now, or expired
			switch d := data[5]; {
			case d == 0:
			case d > 250:
				exp = now.Add(-time.Second)
			default:
				exp = now.Add(time.Duration(d) * time.Second)
			}
			in = append(in, Entry{Prefix: netip.PrefixFrom(a, bits), Expires: exp})
			data = data[6:]
		}
		v4, v6, bad := normalize(in, now)
		if len(v6) != 0 || bad != 0 {
			t.Fatalf("v6=%v bad=%d for IPv4 input", v6, bad)
		}
		for i, r := range v4 {
			if r.hi.less(r.lo) || max4.less(r.hi) {
				t.Fatalf("bad range %d: %+v", i, r)
			}
			if i > 0 {
				p := v4[i-1]
				if !p.hi.less(r.lo) {
					t.Fatalf("overlap/unsorted: %+v then %+v", p, r)
				}
				if p.hi.inc() == r.lo && p.exp == r.exp {
					t.Fatalf("unmerged neighbours: %+v %+v", p, r)
				}
			}
		}
		model := func(x u128) int64 { // 0 = not covered
			var best int64
			for _, e := range in {
				p := e.Prefix.Masked()
				lo := addrU128(p.Addr())
				hi := lastOf(lo, p.Bits(), true)
				k := expKey(e.Expires)
				if k <= now.UnixNano() || x.less(lo) || hi.less(x) {
					continue
				}
				best = max(best, k)
			}
			return best
		}
		got := func(x u128) int64 {
			for _, r := range v4 {
				if !x.less(r.lo) && !r.hi.less(x) {
					return r.exp
				}
			}
			return 0
		}
		var probes []u128
		for _, e := range in {
			p := e.Prefix.Masked()
			lo := addrU128(p.Addr())
			hi := lastOf(lo, p.Bits(), true)
			probes = append(probes, lo, hi, lo.dec(), hi.inc())
		}
		for _, x := range probes {
			if max4.less(x) {
				continue
			}
			if g, w := got(x), model(x); g != w {
				t.Fatalf("address %v: expiry %d, want %d (input %v)", x.addr(true), g, w, in)
			}
		}
	})
}
