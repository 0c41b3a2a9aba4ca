package fraud

import (
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"runtime"
	"sync/atomic"
)

// filter is a presence pre-filter in front of the blacklist tables. Most
// connections come from addresses nothing lists; for them two bit tests,
// in bit sets small enough to stay cached and mapped, replace a probe of
// the big host tables (a TLB and cache miss) and a walk down the routing
// table. It errs one way only: a clear bit proves that no entry can match,
// a set bit proves nothing (the tables decide).
//
// Both bit sets are Bloom filters with two bits a key, both in one 64-bit
// word (one memory access a test): the top bits of the key's hash pick the
// word, its low twelve bits the two bits. At 16 bits an entry about 1.5% of
// unlisted keys pass, at 8 bits 5%; a single bit would let 6% and 12% pass.
//
// hosts holds one key per single-address entry: the address's host-table
// hash (already computed for the lookup).
//
// nets holds one key per network entry: a hash of the network widened to
// a "level", the longest of the family's filterLevels not longer than the
// network (a /20 sets the bits of its /16). A lookup tests, for each level
// at which some network was added, the key of the address masked to that
// level. A network shorter than the family's shortest level marks the
// family wide: its lookups skip the net bits.
//
// Bits are only ever set, by writers holding the lock of the table they
// insert into, before the entry is published. Removing an entry leaves its
// bits (stale, a false positive) until the guard rebuilds the filter. The
// bit sets are sized for the entries present at build time (16 bits an
// entry) and rebuilt larger when entries outgrow them (8 bits an entry).
type filter struct {
	hosts     []atomic.Uint64
	nets      []atomic.Uint64
	hostShift uint8 // 64 - log2(words in hosts)
	netShift  uint8 // 64 - log2(words in nets)
	seed      uint64

	levels [2]atomic.Uint32 // per family (famOf): bit i set once level i holds a network
	wide   [2]atomic.Bool   // per family: a network shorter than every level

	hostCap, netCap int64 // entries beyond which the guard rebuilds a bigger filter
}

// filterLevels are the prefix lengths at which networks are recorded, per
// family (IPv4, IPv6), shortest first. Only the top 64 bits of an IPv6
// address matter at these levels.
var filterLevels = [2][4]uint8{{8, 16, 24, 0}, {16, 32, 48, 64}}

// filterNumLevels is the number of levels in use per family.
var filterNumLevels = [2]int{3, 4}

const (
	filterMinLog = 6  // smallest bit set: one word (only tests build filters this small)
	filterMaxLog = 30 // largest bit set: 128 MiB (67M entries)
)

// newFilter returns an empty filter sized for hosts and nets entries, each
// bit set at most 2^maxLog bits.
func newFilter(hosts, nets int64, seed uint64, maxLog int) *filter {
	f := &filter{seed: seed}
	hl, hc := filterSize(hosts, maxLog)
	nl, nc := filterSize(nets, maxLog)
	f.hosts = bigSlice[atomic.Uint64](f, 1<<(hl-6))
	f.nets = bigSlice[atomic.Uint64](f, 1<<(nl-6))
	f.hostShift, f.netShift = uint8(64-(hl-6)), uint8(64-(nl-6))
	f.hostCap, f.netCap = hc, nc
	return f
}

// filterSize returns log2 of the bit count for n entries (16 bits an
// entry, within [filterMinLog, maxLog]) and the entry count beyond which
// the set is too dense (8 bits an entry; unbounded at maxLog).
func filterSize(n int64, maxLog int) (log int, limit int64) {
	maxLog = min(max(maxLog, filterMinLog), filterMaxLog)
	log = min(max(bits.Len64(uint64(max(n, 1))*16-1), filterMinLog), maxLog)
	if log == maxLog {
		return log, math.MaxInt64
	}
	return log, 1 << (log - 3)
}

// famOf is 0 for IPv4, 1 for IPv6.
func famOf(is4 bool) int {
	if is4 {
		return 0
	}
	return 1
}

// levelOf returns the index of the level a network of the family with the
// given length is recorded at, or -1 if it is shorter than every level.
func levelOf(fam, length int) int {
	for i := filterNumLevels[fam] - 1; i >= 0; i-- {
		if length >= int(filterLevels[fam][i]) {
			return i
		}
	}
	return -1
}

// addrKey returns a's host-table key (hi, lo: its 16-byte form, IPv4 as
// ::ffff:a.b.c.d, split as by splitKey; the zone ignored) and the part of
// it the filter's levels look at (w: the IPv4 address, or the top 64 bits
// of an IPv6 one, as a number).
//
// It avoids As16: copying its 16-byte result, written as two 8-byte
// stores, costs a store-forwarding stall on amd64 (measured: a third of a
// filtered lookup). As4 and AppendBinary into a 16-byte stack buffer (no
// zone, so nothing beyond 16 bytes and no allocation) write and read in
// matching widths.
func addrKey(a netip.Addr) (hi, lo, w uint64) {
	if a.Is4() {
		a4 := a.As4()
		v := binary.LittleEndian.Uint32(a4[:])
		return 0, uint64(v)<<32 | 0xffff0000, uint64(bits.ReverseBytes32(v))
	}
	var buf [16]byte
	b, _ := a.WithZone("").AppendBinary(buf[:0])
	if len(b) != 16 { // the zero Addr; callers pass valid addresses
		hi, lo = splitKey(a.As16())
		return hi, lo, bits.ReverseBytes64(hi)
	}
	return binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[:8])
}

// netKey returns the nets key of the word w masked to level i of fam.
func (f *filter) netKey(w uint64, fam, i int) uint64 {
	l := uint(filterLevels[fam][i])
	width := uint(32 + 32*fam)
	w &^= 1<<(width-l) - 1
	return hashKey(w, uint64(fam<<8|int(l)), f.seed)
}

// testKey reports whether both bits of key x are set in the bit set b of
// 2^(64-shift) words; setKey sets them.
func testKey(b []atomic.Uint64, x uint64, shift uint8) bool {
	m := uint64(1)<<(x&63) | uint64(1)<<(x>>6&63)
	return b[x>>shift].Load()&m == m
}

func setKey(b []atomic.Uint64, x uint64, shift uint8) {
	b[x>>shift].Or(uint64(1)<<(x&63) | uint64(1)<<(x>>6&63))
}

// mayHaveHost reports whether a single-address entry with hash h may exist.
func (f *filter) mayHaveHost(h uint64) bool {
	r := testKey(f.hosts, h, f.hostShift)
	runtime.KeepAlive(f)
	return r
}

// mayHaveNet reports whether a network entry may cover the address of
// family fam (famOf) whose addrKey word is w.
func (f *filter) mayHaveNet(w uint64, fam int) bool {
	if f.wide[fam].Load() {
		return true
	}
	r := false
	for m := f.levels[fam].Load(); m != 0 && !r; m &= m - 1 {
		r = testKey(f.nets, f.netKey(w, fam, bits.TrailingZeros32(m)), f.netShift)
	}
	runtime.KeepAlive(f)
	return r
}

// addHost records a single-address entry with hash h.
func (f *filter) addHost(h uint64) {
	setKey(f.hosts, h, f.hostShift)
	runtime.KeepAlive(f)
}

// addNet records the network p (normalised, not a single address).
func (f *filter) addNet(p netip.Prefix) {
	fam := famOf(p.Addr().Is4())
	i := levelOf(fam, p.Bits())
	if i < 0 {
		f.wide[fam].Store(true)
		return
	}
	_, _, w := addrKey(p.Addr())
	setKey(f.nets, f.netKey(w, fam, i), f.netShift)
	f.levels[fam].Or(1 << i)
	runtime.KeepAlive(f)
}
