package kernelbl

import (
	"math/bits"
	"net/netip"
	"slices"
	"sort"
)

// Subtract returns the parts of bans that no prefix in holes covers: a ban
// inside a hole disappears, a ban that contains holes is split into the
// prefixes around them, and every part keeps the expiry of its ban. IPv4
// and IPv6 are handled apart; IPv4-mapped IPv6 prefixes count as IPv4 (as
// in the kernel sets). The result is sorted by family, address and prefix
// length.
//
// Bans with the same prefix are merged first, keeping the latest expiry.
// Parts of different bans may still overlap (a /32 ban inside a /24 ban
// stays listed); Sync flattens them. Invalid prefixes, in either list, are
// ignored.
//
// The work is bounded: each hole boundary lies inside at most 33 (IPv4) or
// 129 (IPv6) distinct ban prefixes, and a gap between holes becomes at most
// 2×128 prefixes, so the result has at most 256×(len(bans)+258×len(holes))
// entries, however the lists are chosen.
func Subtract(bans []Entry, holes []netip.Prefix) []Entry {
	var h4, h6 []rng
	for _, h := range holes {
		p, ok := canon(h)
		if !ok {
			continue
		}
		is4 := p.Addr().Is4()
		lo := addrU128(p.Addr())
		r := rng{lo: lo, hi: lastOf(lo, p.Bits(), is4)}
		if is4 {
			h4 = append(h4, r)
		} else {
			h6 = append(h6, r)
		}
	}
	h4, h6 = mergeRanges(h4), mergeRanges(h6)

	type ban struct {
		p   netip.Prefix
		exp int64
		e   Entry
	}
	byPrefix := make(map[netip.Prefix]int, len(bans))
	list := make([]ban, 0, len(bans))
	for _, e := range bans {
		p, ok := canon(e.Prefix)
		if !ok {
			continue
		}
		k := expKey(e.Expires)
		if i, dup := byPrefix[p]; dup {
			if k > list[i].exp {
				list[i].exp, list[i].e = k, e
			}
			continue
		}
		byPrefix[p] = len(list)
		list = append(list, ban{p: p, exp: k, e: e})
	}
	slices.SortFunc(list, func(a, b ban) int {
		if a.p.Addr().Is4() != b.p.Addr().Is4() {
			if a.p.Addr().Is4() {
				return -1
			}
			return 1
		}
		if c := a.p.Addr().Compare(b.p.Addr()); c != 0 {
			return c
		}
		return a.p.Bits() - b.p.Bits()
	})

	out := make([]Entry, 0, len(list))
	for _, b := range list {
		is4 := b.p.Addr().Is4()
		hs := h6
		if is4 {
			hs = h4
		}
		lo := addrU128(b.p.Addr())
		hi := lastOf(lo, b.p.Bits(), is4)
		i := sort.Search(len(hs), func(i int) bool { return !hs[i].hi.less(lo) })
		if i == len(hs) || hi.less(hs[i].lo) {
			out = append(out, Entry{Prefix: b.p, Expires: b.e.Expires}) // untouched
			continue
		}
		emit := func(p netip.Prefix) { out = append(out, Entry{Prefix: p, Expires: b.e.Expires}) }
		cur, done := lo, false
		for ; i < len(hs) && !hi.less(hs[i].lo); i++ {
			if cur.less(hs[i].lo) {
				rangePrefixes(cur, hs[i].lo.dec(), is4, emit)
			}
			if !hs[i].hi.less(hi) { // the hole reaches the ban's end
				done = true
				break
			}
			cur = hs[i].hi.inc()
		}
		if !done {
			rangePrefixes(cur, hi, is4, emit)
		}
	}
	return out
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges.
func mergeRanges(rs []rng) []rng {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b rng) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if !last.hi.less(r.lo) || last.hi.inc() == r.lo {
			if last.hi.less(r.hi) {
				last.hi = r.hi
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// rangePrefixes calls fn with the fewest prefixes that cover exactly the
// inclusive range lo..hi (at most 2×32 or 2×128), lowest first.
func rangePrefixes(lo, hi u128, v4 bool, fn func(netip.Prefix)) {
	width := 128
	if v4 {
		width = 32
	}
	for range 2*width + 1 { // bound; the loop ends by return well before
		b := width - min(trailingZeros(lo), width)
		for hi.less(lastOf(lo, b, v4)) {
			b++
		}
		fn(netip.PrefixFrom(lo.addr(v4), b))
		last := lastOf(lo, b, v4)
		if last == hi {
			return
		}
		lo = last.inc()
	}
}

func trailingZeros(a u128) int {
	if a.lo != 0 {
		return bits.TrailingZeros64(a.lo)
	}
	if a.hi != 0 {
		return 64 + bits.TrailingZeros64(a.hi)
	}
	return 128
}
