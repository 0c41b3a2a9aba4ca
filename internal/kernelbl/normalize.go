package kernelbl

import (
	"container/heap"
	"math"
	"net/netip"
	"slices"
	"time"
)

// Entry is one blacklisted prefix. A zero Expires means forever.
type Entry struct {
	Prefix  netip.Prefix
	Expires time.Time
}

// forever is the expiry key of an entry without expiry: later than any time.
const forever = math.MaxInt64

// u128 is an address as a 128-bit integer; IPv4 uses the low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (a u128) inc() u128 {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
	}
	return u128{hi, lo}
}

func (a u128) dec() u128 {
	lo := a.lo - 1
	hi := a.hi
	if a.lo == 0 {
		hi--
	}
	return u128{hi, lo}
}

var (
	max4 = u128{0, math.MaxUint32}
	max6 = u128{math.MaxUint64, math.MaxUint64}
)

func addrU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

// key returns the big-endian bytes of a: 4 for IPv4, 16 for IPv6.
func (a u128) key(v4 bool) []byte {
	if v4 {
		return []byte{byte(a.lo >> 24), byte(a.lo >> 16), byte(a.lo >> 8), byte(a.lo)}
	}
	b := make([]byte, 16)
	for i := 0; i < 8; i++ {
		b[7-i] = byte(a.hi >> (8 * i))
		b[15-i] = byte(a.lo >> (8 * i))
	}
	return b
}

// keyU128 is the inverse of key; ok is false for a key of the wrong length.
func keyU128(b []byte, v4 bool) (u128, bool) {
	if v4 {
		if len(b) != 4 {
			return u128{}, false
		}
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}, true
	}
	if len(b) != 16 {
		return u128{}, false
	}
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x, true
}

func (a u128) addr(v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte(a.key(true)))
	}
	return netip.AddrFrom16([16]byte(a.key(false)))
}

// lastOf returns the last address of p (masked, 4 or 16 bytes).
func lastOf(first u128, bits int, v4 bool) u128 {
	host := 128 - bits
	if v4 {
		host = 32 - bits
	}
	var m u128 // host mask
	switch {
	case host >= 128:
		m = max6
	case host >= 64:
		m = u128{1<<(host-64) - 1, math.MaxUint64}
	default:
		m = u128{0, 1<<host - 1}
	}
	return u128{first.hi | m.hi, first.lo | m.lo}
}

// canon returns p masked, with an IPv4-mapped IPv6 prefix of at least /96
// turned into the IPv4 prefix it denotes. ok is false for an invalid prefix.
func canon(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a := p.Addr().WithZone("")
	bits := p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	q, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return q, true
}

// rng is an inclusive address range with one expiry key (UnixNano, or
// forever).
type rng struct {
	lo, hi u128
	exp    int64
}

func expKey(t time.Time) int64 {
	if t.IsZero() {
		return forever
	}
	return t.UnixNano()
}

// normalize turns entries into the non-overlapping, sorted ranges an
// interval set accepts, one list per family. Every address keeps the latest
// expiry of all entries that cover it: a /32 inside a /24 that lives at least
// as long disappears; one that outlives the /24 splits it. Adjacent ranges
// with the same expiry are merged. Entries already expired at now are
// dropped; invalid prefixes are counted in bad and otherwise ignored.
func normalize(entries []Entry, now time.Time) (v4, v6 []rng, bad int) {
	var in4, in6 []rng
	nowKey := now.UnixNano()
	for _, e := range entries {
		p, ok := canon(e.Prefix)
		if !ok {
			bad++
			continue
		}
		exp := expKey(e.Expires)
		if exp <= nowKey {
			continue
		}
		is4 := p.Addr().Is4()
		lo := addrU128(p.Addr())
		r := rng{lo: lo, hi: lastOf(lo, p.Bits(), is4), exp: exp}
		if is4 {
			in4 = append(in4, r)
		} else {
			in6 = append(in6, r)
		}
	}
	return flatten(in4, max4), flatten(in6, max6), bad
}

// flatten returns the disjoint ranges covered by in, each with the largest
// expiry of the inputs covering it, sorted and with equal neighbours merged.
// maxAddr is the family's last address.
func flatten(in []rng, maxAddr u128) []rng {
	if len(in) == 0 {
		return nil
	}
	type event struct {
		pos   u128 // start, or one past the end
		inf   bool // end event past maxAddr
		start bool
		idx   int
	}
	evs := make([]event, 0, 2*len(in))
	for i, r := range in {
		evs = append(evs, event{pos: r.lo, start: true, idx: i})
		if r.hi == maxAddr {
			evs = append(evs, event{inf: true, idx: i})
		} else {
			evs = append(evs, event{pos: r.hi.inc(), idx: i})
		}
	}
	slices.SortFunc(evs, func(a, b event) int {
		switch {
		case a.inf != b.inf:
			if a.inf {
				return 1
			}
			return -1
		case a.pos.less(b.pos):
			return -1
		case b.pos.less(a.pos):
			return 1
		}
		return 0
	})

	h := &expHeap{rs: in}
	removed := make([]bool, len(in))
	top := func() (int64, bool) {
		for h.Len() > 0 && removed[h.idx[0]] {
			heap.Pop(h)
		}
		if h.Len() == 0 {
			return 0, false
		}
		return in[h.idx[0]].exp, true
	}
	out := make([]rng, 0, len(in))
	emit := func(lo, hi u128, exp int64) {
		if n := len(out); n > 0 && out[n-1].exp == exp && out[n-1].hi.inc() == lo && out[n-1].hi != maxAddr {
			out[n-1].hi = hi
			return
		}
		out = append(out, rng{lo: lo, hi: hi, exp: exp})
	}
	var p u128
	for i := 0; i < len(evs); {
		q := evs[i]
		if exp, ok := top(); ok {
			if q.inf {
				emit(p, maxAddr, exp)
			} else if p.less(q.pos) {
				emit(p, q.pos.dec(), exp)
			}
		}
		for ; i < len(evs) && evs[i].inf == q.inf && evs[i].pos == q.pos; i++ {
			if evs[i].start {
				heap.Push(h, evs[i].idx)
			} else {
				removed[evs[i].idx] = true
			}
		}
		p = q.pos
	}
	return out
}

// expHeap is a max-heap of indexes into rs by expiry.
type expHeap struct {
	rs  []rng
	idx []int
}

func (h *expHeap) Len() int           { return len(h.idx) }
func (h *expHeap) Less(i, j int) bool { return h.rs[h.idx[i]].exp > h.rs[h.idx[j]].exp }
func (h *expHeap) Swap(i, j int)      { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *expHeap) Push(x any)         { h.idx = append(h.idx, x.(int)) }
func (h *expHeap) Pop() any {
	n := len(h.idx) - 1
	x := h.idx[n]
	h.idx = h.idx[:n]
	return x
}
