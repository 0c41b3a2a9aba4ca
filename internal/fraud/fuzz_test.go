package fraud

import (
	"net/netip"
	"testing"
)

// FuzzGuard runs a sequence of blacklist operations, decoded from the
// input, against the guard and against a plain map of prefixes, and checks
// that both answer every lookup alike. Addresses come from a small space so
// that operations collide; tables stay small so that they are rebuilt often.
//
// An input of odd length runs with a presence filter from the first entry,
// its bit sets as small as they go (64 bits), so that bits collide, go stale
// and the filter is rebuilt often; after every operation every entry of the
// model must have its bit set.
func FuzzGuard(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0})
	f.Add([]byte{0, 0x01, 0xc0, 0x10, 0x42, 0xd0, 0x01, 0x05, 0xf0, 0x02, 0x01, 0xc0, 0x06, 0, 0, 0x07, 0, 0, 0x05, 0x42, 0xd0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		g := newGuard(0x1234)
		filtered := len(ops)%2 == 1
		if filtered {
			g.filterMin, g.filterLog = 1, filterMinLog
		}
		model := make(map[netip.Prefix]int64)
		now := int64(1000)
		nowFn := func() int64 { return now }
		// addr picks one of 64 addresses of either family.
		addr := func(b byte) netip.Addr {
			if b&0x40 != 0 {
				return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: b & 0x3f})
			}
			return netip.AddrFrom4([4]byte{10, 0, b >> 4 & 3, b & 0x0f})
		}
		// prefix picks a host or a long prefix (l < 12), or a short one
		// around the filter's levels, some of them wider than every level.
		prefix := func(b, l byte) netip.Prefix {
			a := addr(b)
			bits := a.BitLen() - int(l%6)
			if l >= 12 {
				short := [2][4]int{{0, 8, 17, 24}, {8, 16, 47, 64}}
				bits = short[famOf(a.Is4())][l-12]
			}
			p, _ := normPrefix(netip.PrefixFrom(a, bits))
			return p
		}
		inForce := func(a netip.Addr) bool {
			for p, exp := range model {
				if p.Contains(a) && !expiredAt(exp, now) {
					return true
				}
			}
			return false
		}
		for i := 0; i+2 < len(ops) && i < 3*512; i += 3 {
			op, x, y := ops[i], ops[i+1], ops[i+2]
			p := prefix(x, y>>4)
			switch op % 8 {
			case 0, 1: // set, sometimes with an expiry
				var exp int64
				if op&0x10 != 0 {
					exp = now + int64(y&0x0f) + 1
				}
				onlyIfPresent := op&0x20 != 0
				_, had := model[p]
				if in := g.set(p, exp, onlyIfPresent); in != (had || !onlyIfPresent) {
					t.Fatalf("set %s onlyIfPresent=%v: in=%v, model had=%v", p, onlyIfPresent, in, had)
				}
				if had || !onlyIfPresent {
					model[p] = exp
				}
			case 2: // remove
				exp, had := g.remove(p)
				mexp, mhad := model[p]
				if had != mhad || had && exp != mexp {
					t.Fatalf("remove %s = %d,%v; model %d,%v", p, exp, had, mexp, mhad)
				}
				delete(model, p)
			case 3: // time passes
				now += int64(y & 0x07)
			case 4: // sweep
				gone := g.expire(now)
				want := 0
				for q, exp := range model {
					if expiredAt(exp, now) {
						delete(model, q)
						want++
					}
				}
				if len(gone) != want {
					t.Fatalf("expire removed %d, model %d", len(gone), want)
				}
			case 5: // exact get
				exp, ok := g.get(p)
				mexp, mok := model[p]
				if ok != mok || ok && exp != mexp {
					t.Fatalf("get %s = %d,%v; model %d,%v", p, exp, ok, mexp, mok)
				}
			case 6: // reload: replace the content with a copy of the model
				n := newGuard(g.seed)
				n.filterMin, n.filterLog = g.filterMin, g.filterLog
				for q, exp := range model {
					n.set(q, exp, false)
				}
				g.replace(n)
			case 7: // rebuild the filter now
				g.rebuildFilter(true)
			}
			a := addr(x ^ y)
			if got, _ := g.blocked(a, nowFn); got != inForce(a) {
				t.Fatalf("op %d: blocked(%s) = %v, model %v (model %v)", i/3, a, got, !got, model)
			}
			if g.size() != len(model) {
				t.Fatalf("size %d, model %d", g.size(), len(model))
			}
			if filtered && len(model) > 0 && g.filter.Load() == nil {
				t.Fatalf("op %d: no filter with %d entries", i/3, len(model))
			}
			checkFilter(t, g, model)
		}
		// within agrees with the model for a few networks.
		for _, p := range []netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("10.0.1.0/28"), mustPrefix("2001:db8::/120")} {
			got := map[netip.Prefix]bool{}
			for _, q := range g.within(p) {
				got[q] = true
			}
			for q := range model {
				if inside(q, p) != got[q] {
					t.Fatalf("within(%s): %s is %v, model %v", p, q, got[q], inside(q, p))
				}
			}
		}
	})
}

// checkFilter fails unless g's filter (if any) lets every entry of model
// through.
func checkFilter(t *testing.T, g *guard, model map[netip.Prefix]int64) {
	t.Helper()
	f := g.filter.Load()
	if f == nil {
		return
	}
	for p := range model {
		hi, lo, w := addrKey(p.Addr())
		if isHost(p) {
			if !f.mayHaveHost(hashKey(hi, lo, g.seed)) {
				t.Fatalf("filter has no bit for host %s", p)
			}
		} else if !f.mayHaveNet(w, famOf(p.Addr().Is4())) {
			t.Fatalf("filter has no bit for network %s", p)
		}
	}
}
