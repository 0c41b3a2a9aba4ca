package fraud

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// guardShards is the number of writer shards of the in-memory blacklist. A
// power of two; the top bits of an address's hash pick the shard.
const (
	guardShardBits = 6
	guardShards    = 1 << guardShardBits
)

// cidrTable is the routing table type for blacklisted networks: bart.Fast
// trades memory (about 160 bytes an IPv4 network, 190 an IPv6 one, against
// 80 and 110 for bart.Table; measured with 100k random /24s and /48s) for
// lookups about a third faster.
type cidrTable = bart.Fast[int64]

// guard is the in-memory copy of the blacklist that Allowed consults: single
// addresses in sharded lock-free hash tables (hostTable), networks in a bart
// routing table published through an atomic pointer (copy-on-write). The
// value is the expiry in Unix nanoseconds, 0 for never. Readers take no lock
// and write nothing shared; writers take the shard's (or cidrMu) mutex.
//
// It holds no entry details (reason, evidence): those live in the store.
type guard struct {
	seed uint64
	sh   [guardShards]guardShard

	cidrMu     sync.Mutex // serialises writers of cidr; guards cidrMinExp
	cidrMinExp int64      // lowest expiry in cidr (may be stale-low), 0 = none
	cidr       atomic.Pointer[cidrTable]

	hosts atomic.Int64 // entries in the host tables
	nets  atomic.Int64 // entries in cidr
}

type guardShard struct {
	mu     sync.Mutex // serialises writers; guards minExp and tab's counters
	tab    hostTable
	minExp int64 // lowest expiry in tab (may be stale-low), 0 = none
	_      [64]byte
}

func newGuard(seed uint64) *guard {
	g := &guard{seed: seed}
	g.cidr.Store(new(cidrTable))
	return g
}

func (g *guard) shard(h uint64) *guardShard { return &g.sh[h>>(64-guardShardBits)] }

// blocked reports whether a blacklist entry in force covers a and returns
// a's hash (for counter lanes). a must be unmapped and valid. now is called
// at most twice, and only when an entry with an expiry matches.
func (g *guard) blocked(a netip.Addr, now func() int64) (bool, uint64) {
	hi, lo := splitKey(a.As16())
	h := hashKey(hi, lo, g.seed)
	exp, ok := g.shard(h).tab.get(hi, lo, h)
	if ok && (exp == 0 || !expiredAt(exp, now())) {
		return true, h
	}
	if g.nets.Load() == 0 {
		return false, h
	}
	t := g.cidr.Load()
	exp, ok = t.Lookup(a)
	if !ok {
		return false, h
	}
	if exp == 0 {
		return true, h
	}
	n := now()
	if !expiredAt(exp, n) {
		return true, h
	}
	// The most specific network has expired (the sweep has not removed it
	// yet); a wider one may still be in force. Rare, so allocation is fine.
	for _, x := range t.Supernets(hostPrefix(a)) {
		if !expiredAt(x, n) {
			return true, h
		}
	}
	return false, h
}

// covering returns the entry that blocks a at now: the exact address first,
// then the most specific network in force.
func (g *guard) covering(a netip.Addr, now int64) (netip.Prefix, int64, bool) {
	if exp, ok := g.get(hostPrefix(a)); ok && !expiredAt(exp, now) {
		return hostPrefix(a), exp, true
	}
	var best netip.Prefix
	var bestExp int64
	found := false
	for p, x := range g.cidr.Load().Supernets(hostPrefix(a)) {
		if !expiredAt(x, now) && (!found || p.Bits() > best.Bits()) {
			best, bestExp, found = p, x, true
		}
	}
	return best, bestExp, found
}

// get returns the expiry of the entry with exactly prefix p.
func (g *guard) get(p netip.Prefix) (int64, bool) {
	if !isHost(p) {
		return g.cidr.Load().Get(p)
	}
	hi, lo := splitKey(p.Addr().As16())
	h := hashKey(hi, lo, g.seed)
	return g.shard(h).tab.get(hi, lo, h)
}

// set inserts or replaces the entry for p (normalised) with expiry exp.
// With onlyIfPresent it changes an existing entry only. It reports whether
// the entry is there now.
func (g *guard) set(p netip.Prefix, exp int64, onlyIfPresent bool) bool {
	if !isHost(p) {
		g.cidrMu.Lock()
		defer g.cidrMu.Unlock()
		t := g.cidr.Load()
		_, had := t.Get(p)
		if onlyIfPresent && !had {
			return false
		}
		g.cidr.Store(t.InsertPersist(p, exp))
		if !had {
			g.nets.Add(1)
		}
		if exp != 0 && (g.cidrMinExp == 0 || exp < g.cidrMinExp) {
			g.cidrMinExp = exp
		}
		return true
	}
	hi, lo := splitKey(p.Addr().As16())
	h := hashKey(hi, lo, g.seed)
	sh := g.shard(h)
	sh.mu.Lock()
	had := sh.tab.set(hi, lo, h, exp, onlyIfPresent, g.seed)
	in := had || !onlyIfPresent
	if in && exp != 0 && (sh.minExp == 0 || exp < sh.minExp) {
		sh.minExp = exp
	}
	sh.mu.Unlock()
	if !had && in {
		g.hosts.Add(1)
	}
	return in
}

// remove deletes the entry with exactly prefix p and reports whether there
// was one; exp is its expiry.
func (g *guard) remove(p netip.Prefix) (exp int64, had bool) {
	if !isHost(p) {
		g.cidrMu.Lock()
		defer g.cidrMu.Unlock()
		t := g.cidr.Load()
		if exp, had = t.Get(p); had {
			g.cidr.Store(t.DeletePersist(p))
			g.nets.Add(-1)
		}
		return exp, had
	}
	hi, lo := splitKey(p.Addr().As16())
	h := hashKey(hi, lo, g.seed)
	sh := g.shard(h)
	sh.mu.Lock()
	exp, had = sh.tab.remove(hi, lo, h)
	sh.mu.Unlock()
	if had {
		g.hosts.Add(-1)
	}
	return exp, had
}

// within returns every entry whose prefix lies inside p (p itself
// included). For a network it walks every host table: an operator action,
// not a hot path.
func (g *guard) within(p netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	if isHost(p) {
		if _, ok := g.get(p); ok {
			out = append(out, p)
		}
	} else {
		for i := range g.sh {
			sh := &g.sh[i]
			sh.mu.Lock()
			sh.tab.each(func(a netip.Addr, _ int64) bool {
				if p.Contains(a) {
					out = append(out, hostPrefix(a))
				}
				return false
			})
			sh.mu.Unlock()
		}
	}
	for q := range g.cidr.Load().Subnets(p) {
		out = append(out, q)
	}
	return out
}

// expire removes every entry whose expiry is at or before now and returns
// their prefixes. Shards whose earliest expiry lies in the future are not
// scanned; readers are never blocked.
func (g *guard) expire(now int64) []netip.Prefix {
	var out []netip.Prefix
	for i := range g.sh {
		sh := &g.sh[i]
		sh.mu.Lock()
		if sh.minExp != 0 && sh.minExp <= now {
			var low int64
			sh.tab.each(func(a netip.Addr, exp int64) bool {
				switch {
				case exp == 0:
				case exp <= now:
					out = append(out, hostPrefix(a))
					return true
				case low == 0 || exp < low:
					low = exp
				}
				return false
			})
			sh.minExp = low
		}
		sh.mu.Unlock()
	}
	g.hosts.Add(-int64(len(out)))

	g.cidrMu.Lock()
	if g.cidrMinExp != 0 && g.cidrMinExp <= now {
		t := g.cidr.Load()
		var low int64
		var gone []netip.Prefix
		for p, exp := range t.All() {
			switch {
			case exp == 0:
			case exp <= now:
				gone = append(gone, p)
			case low == 0 || exp < low:
				low = exp
			}
		}
		if len(gone) > 0 {
			t = t.Clone()
			for _, p := range gone {
				t.Delete(p)
			}
			g.cidr.Store(t)
			g.nets.Add(-int64(len(gone)))
			out = append(out, gone...)
		}
		g.cidrMinExp = low
	}
	g.cidrMu.Unlock()
	return out
}

// replace swaps the whole content for that of n (built by the caller with
// set on a private guard sharing g's seed).
func (g *guard) replace(n *guard) {
	for i := range g.sh {
		sh, ns := &g.sh[i], &n.sh[i]
		sh.mu.Lock()
		sh.tab.arr.Store(ns.tab.arr.Load())
		sh.tab.live, sh.tab.used, sh.minExp = ns.tab.live, ns.tab.used, ns.minExp
		sh.mu.Unlock()
	}
	g.cidrMu.Lock()
	g.cidr.Store(n.cidr.Load())
	g.cidrMinExp = n.cidrMinExp
	g.nets.Store(n.nets.Load())
	g.cidrMu.Unlock()
	g.hosts.Store(n.hosts.Load())
}

func (g *guard) size() int { return int(g.hosts.Load() + g.nets.Load()) }
