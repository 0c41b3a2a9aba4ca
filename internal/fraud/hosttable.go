package fraud

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"runtime"
	"sync/atomic"
)

// hostTable is an open-addressing hash set of addresses with an expiry
// each, built for a read path that takes no lock and writes no shared
// memory: readers only load atomics, so Allowed on many cores does not
// bounce cache lines. Writers must be serialised by the caller (the guard
// shard's mutex).
//
// An address is keyed by its 16-byte form (IPv4 as ::ffff:a.b.c.d; callers
// unmap their inputs, so no IPv6 address collides with it). A slot's key is
// written before its meta word is published and never changes afterwards
// within one slot array; deleted slots become tombstones and are reclaimed
// only when the array is rebuilt. Linear probing; the array is rebuilt
// (twice the live entries, rounded up to a power of two) when live entries
// plus tombstones would exceed three quarters of it, and published through
// an atomic pointer. A reader still walking the previous array sees the
// state as of the swap; a write racing an Allowed call may or may not be
// seen by it, as with any lock.
type hostTable struct {
	arr  atomic.Pointer[slotArray]
	live int // writers only
	used int // live + tombstones; writers only
}

// slotArray is one generation of a hostTable's slots. A big one is mapped
// off the Go heap on huge pages (bigSlice) and unmapped once the slotArray
// is unreachable: a reader keeps the *slotArray it loaded alive until its
// last slot access (runtime.KeepAlive in get), so a rebuild or replace can
// drop an array while readers still walk it.
type slotArray struct {
	mask  uint64
	slots []slot // holds no Go pointers, as bigSlice requires
}

// slot is 24 bytes.
type slot struct {
	hi, lo atomic.Uint64
	meta   atomic.Uint64 // metaEmpty, metaTomb, or encodeExp(expiry)
}

const (
	metaEmpty   = 0
	metaTomb    = 1
	metaForever = 2
	minSlots    = 16
)

// encodeExp maps an expiry (Unix ns, 0 = never) to a meta word ≥ 2.
func encodeExp(exp int64) uint64 {
	if exp == 0 {
		return metaForever
	}
	if m := uint64(exp); m > metaForever {
		return m
	}
	return metaForever + 1 // 1 or 2 ns after the Unix epoch: close enough
}

func decodeExp(m uint64) int64 {
	if m == metaForever {
		return 0
	}
	return int64(m)
}

func splitKey(k [16]byte) (hi, lo uint64) {
	return binary.LittleEndian.Uint64(k[:8]), binary.LittleEndian.Uint64(k[8:])
}

func joinKey(hi, lo uint64) netip.Addr {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:8], hi)
	binary.LittleEndian.PutUint64(k[8:], lo)
	return netip.AddrFrom16(k).Unmap()
}

// get returns the expiry of hi|lo (hash h). Lock-free.
func (t *hostTable) get(hi, lo, h uint64) (int64, bool) {
	a := t.arr.Load()
	if a == nil {
		return 0, false
	}
	exp, ok := int64(0), false
	for i, n := h&a.mask, 0; n < len(a.slots); i, n = (i+1)&a.mask, n+1 {
		s := &a.slots[i]
		m := s.meta.Load()
		if m == metaEmpty {
			break
		}
		if m != metaTomb && s.lo.Load() == lo && s.hi.Load() == hi {
			exp, ok = decodeExp(m), true
			break
		}
	}
	runtime.KeepAlive(a) // a's slots may be mapped memory that a's cleanup unmaps
	return exp, ok
}

// find returns the slot holding hi|lo in a, or nil. Writers only.
func (a *slotArray) find(hi, lo, h uint64) *slot {
	for i, n := h&a.mask, 0; n < len(a.slots); i, n = (i+1)&a.mask, n+1 {
		s := &a.slots[i]
		m := s.meta.Load()
		if m == metaEmpty {
			return nil
		}
		if m != metaTomb && s.lo.Load() == lo && s.hi.Load() == hi {
			return s
		}
	}
	return nil
}

// put stores a new key in the first empty slot from h. a must have one.
func (a *slotArray) put(hi, lo, h, meta uint64) {
	for i := h & a.mask; ; i = (i + 1) & a.mask {
		s := &a.slots[i]
		if s.meta.Load() == metaEmpty {
			s.hi.Store(hi)
			s.lo.Store(lo)
			s.meta.Store(meta) // publish
			return
		}
	}
}

// set inserts or updates hi|lo with expiry exp; with onlyIfPresent it only
// updates. It reports whether the key was present before.
func (t *hostTable) set(hi, lo, h uint64, exp int64, onlyIfPresent bool, seed uint64) bool {
	a := t.arr.Load()
	if a != nil {
		if s := a.find(hi, lo, h); s != nil {
			s.meta.Store(encodeExp(exp))
			return true
		}
	}
	if onlyIfPresent {
		return false
	}
	if a == nil || (t.used+1)*4 > len(a.slots)*3 {
		a = t.rebuild(a, t.live+1, seed)
	}
	a.put(hi, lo, h, encodeExp(exp))
	t.live++
	t.used++
	return false
}

// remove deletes hi|lo and returns its expiry.
func (t *hostTable) remove(hi, lo, h uint64) (int64, bool) {
	a := t.arr.Load()
	if a == nil {
		return 0, false
	}
	s := a.find(hi, lo, h)
	if s == nil {
		return 0, false
	}
	exp := decodeExp(s.meta.Load())
	s.meta.Store(metaTomb)
	t.live--
	return exp, true
}

// rebuild publishes a fresh array sized for want live entries, holding the
// live entries of old.
func (t *hostTable) rebuild(old *slotArray, want int, seed uint64) *slotArray {
	n := max(minSlots, 1<<bits.Len(uint(want*2-1)))
	a := &slotArray{mask: uint64(n - 1)}
	a.slots = bigSlice[slot](a, n)
	live := 0
	if old != nil {
		for i := range old.slots {
			s := &old.slots[i]
			if m := s.meta.Load(); m != metaEmpty && m != metaTomb {
				hi, lo := s.hi.Load(), s.lo.Load()
				a.put(hi, lo, hashKey(hi, lo, seed), m)
				live++
			}
		}
	}
	t.arr.Store(a)
	t.live, t.used = live, live
	return a
}

// eachKey calls fn with the key of every live entry. Writers only.
func (t *hostTable) eachKey(fn func(hi, lo uint64)) {
	a := t.arr.Load()
	if a == nil {
		return
	}
	for i := range a.slots {
		s := &a.slots[i]
		if m := s.meta.Load(); m != metaEmpty && m != metaTomb {
			fn(s.hi.Load(), s.lo.Load())
		}
	}
	runtime.KeepAlive(a)
}

// each calls fn for every live entry; fn returning true deletes it.
// Writers only.
func (t *hostTable) each(fn func(a netip.Addr, exp int64) (del bool)) {
	a := t.arr.Load()
	if a == nil {
		return
	}
	for i := range a.slots {
		s := &a.slots[i]
		m := s.meta.Load()
		if m == metaEmpty || m == metaTomb {
			continue
		}
		if fn(joinKey(s.hi.Load(), s.lo.Load()), decodeExp(m)) {
			s.meta.Store(metaTomb)
			t.live--
		}
	}
}

// hashKey hashes a 16-byte key with the engine's random seed, so that an
// attacker cannot aim a flood at one shard or one probe chain. Every bit
// of the key reaches every bit of the hash (MurmurHash3's 64-bit
// finaliser): the low bits choose counting shards and home slots, and
// neighbouring IPv4 addresses differ only in the top bytes of lo (without
// the finaliser, 1,000 consecutive addresses fell on 4 of 64 shards and 8
// of 1,024 slots).
func hashKey(hi, lo, seed uint64) uint64 {
	x := (hi^seed)*0x9e3779b97f4a7c15 ^ (lo+seed)*0xc2b2ae3d27d4eb4f
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	return x ^ x>>33
}

// hashAddr hashes an unmapped address; 0 for the zero Addr.
func hashAddr(a netip.Addr, seed uint64) uint64 {
	if !a.IsValid() {
		return 0
	}
	hi, lo := splitKey(a.As16())
	return hashKey(hi, lo, seed)
}
