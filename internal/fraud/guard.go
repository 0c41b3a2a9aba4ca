package fraud

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// guardShards is the number of writer shards of the in-memory blacklist. A
// power of two; the top bits of an address's hash pick the shard. Few, so
// that a big blacklist makes big slot arrays, which bigSlice maps on huge
// pages (1M addresses: eight 6 MiB arrays); writers are rare enough (bans,
// unbans, sweeps) that eight locks do not contend.
const (
	guardShardBits = 3
	guardShards    = 1 << guardShardBits
)

// filterMinEntries is the number of entries from which the guard keeps a
// presence filter; smaller tables stay in cache anyway.
const filterMinEntries = 1024

// cidrTable is the routing table type for blacklisted networks: bart.Fast
// trades memory (about 160 bytes an IPv4 network, 190 an IPv6 one, against
// 80 and 110 for bart.Table; measured with 100k random /24s and /48s) for
// lookups about a third faster.
type cidrTable = bart.Fast[int64]

// guard is the in-memory copy of the blacklist that Allowed consults: single
// addresses in sharded lock-free hash tables (hostTable), networks in a bart
// routing table published through an atomic pointer (copy-on-write), and in
// front of both, once there are filterMin entries, a presence filter that
// answers most lookups of unlisted addresses alone. The value is the expiry
// in Unix nanoseconds, 0 for never. Readers take no lock and write nothing
// shared; writers take the shard's (or cidrMu) mutex.
//
// Filter invariant: every entry in the tables has its bit set in the
// published filter. Inserts set the bit under the table's lock before
// publishing the entry; rebuildFilter holds every lock while it builds and
// publishes a new filter. Lock order: filterMu, then the shards in order,
// then cidrMu.
//
// It holds no entry details (reason, evidence): those live in the store.
type guard struct {
	seed uint64
	sh   [guardShards]guardShard

	filter    atomic.Pointer[filter] // nil while there are fewer than filterMin entries
	filterMu  sync.Mutex             // serialises filter rebuilds and replace
	stale     atomic.Int64           // entries removed since the filter was built
	filterMin int64                  // entries from which a filter is kept (filterMinEntries)
	filterLog int                    // log2 of the bits in the filter's largest bit set (filterMaxLog)

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
	g := &guard{seed: seed, filterMin: filterMinEntries, filterLog: filterMaxLog}
	g.cidr.Store(new(cidrTable))
	return g
}

func (g *guard) shard(h uint64) *guardShard { return &g.sh[h>>(64-guardShardBits)] }

// blocked reports whether a blacklist entry in force covers a and returns
// a's hash (for counter lanes). a must be unmapped and valid. now is called
// at most twice, and only when an entry with an expiry matches.
func (g *guard) blocked(a netip.Addr, now func() int64) (bool, uint64) {
	hi, lo, w := addrKey(a)
	h := hashKey(hi, lo, g.seed)
	f := g.filter.Load()
	if f == nil || f.mayHaveHost(h) {
		exp, ok := g.shard(h).tab.get(hi, lo, h)
		if ok && (exp == 0 || !expiredAt(exp, now())) {
			return true, h
		}
	}
	if g.nets.Load() == 0 || f != nil && !f.mayHaveNet(w, famOf(a.Is4())) {
		return false, h
	}
	t := g.cidr.Load()
	exp, ok := t.Lookup(a)
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
		t := g.cidr.Load()
		_, had := t.Get(p)
		if onlyIfPresent && !had {
			g.cidrMu.Unlock()
			return false
		}
		if f := g.filter.Load(); f != nil && !had {
			f.addNet(p) // before the entry is published
		}
		g.cidr.Store(t.InsertPersist(p, exp))
		if !had {
			g.nets.Add(1)
		}
		if exp != 0 && (g.cidrMinExp == 0 || exp < g.cidrMinExp) {
			g.cidrMinExp = exp
		}
		g.cidrMu.Unlock()
		if !had {
			g.maybeRebuildFilter()
		}
		return true
	}
	hi, lo := splitKey(p.Addr().As16())
	h := hashKey(hi, lo, g.seed)
	sh := g.shard(h)
	sh.mu.Lock()
	if f := g.filter.Load(); f != nil && !onlyIfPresent {
		// An entry already present has its bit; a new one needs it
		// before tab.set publishes it.
		f.addHost(h)
	}
	had := sh.tab.set(hi, lo, h, exp, onlyIfPresent, g.seed)
	in := had || !onlyIfPresent
	if in && exp != 0 && (sh.minExp == 0 || exp < sh.minExp) {
		sh.minExp = exp
	}
	sh.mu.Unlock()
	if !had && in {
		g.hosts.Add(1)
		g.maybeRebuildFilter()
	}
	return in
}

// remove deletes the entry with exactly prefix p and reports whether there
// was one; exp is its expiry.
func (g *guard) remove(p netip.Prefix) (exp int64, had bool) {
	if !isHost(p) {
		g.cidrMu.Lock()
		t := g.cidr.Load()
		if exp, had = t.Get(p); had {
			g.cidr.Store(t.DeletePersist(p))
			g.nets.Add(-1)
		}
		g.cidrMu.Unlock()
	} else {
		hi, lo := splitKey(p.Addr().As16())
		h := hashKey(hi, lo, g.seed)
		sh := g.shard(h)
		sh.mu.Lock()
		exp, had = sh.tab.remove(hi, lo, h)
		sh.mu.Unlock()
		if had {
			g.hosts.Add(-1)
		}
	}
	if had {
		g.stale.Add(1)
		g.maybeRebuildFilter()
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
	if len(out) > 0 {
		g.stale.Add(int64(len(out)))
		g.maybeRebuildFilter()
	}
	return out
}

// replace swaps the whole content for that of n (built by the caller with
// set on a private guard sharing g's seed, and not used afterwards).
func (g *guard) replace(n *guard) {
	g.lockAll()
	for i := range g.sh {
		sh, ns := &g.sh[i], &n.sh[i]
		sh.tab.arr.Store(ns.tab.arr.Load())
		sh.tab.live, sh.tab.used, sh.minExp = ns.tab.live, ns.tab.used, ns.minExp
	}
	g.cidr.Store(n.cidr.Load())
	g.cidrMinExp = n.cidrMinExp
	g.nets.Store(n.nets.Load())
	g.hosts.Store(n.hosts.Load())
	// Last: a reader that sees the new filter sees the new tables.
	g.filter.Store(n.filter.Load())
	g.stale.Store(n.stale.Load())
	g.unlockAll()
	g.maybeRebuildFilter() // n may have been too small for a filter, or g's limits differ
}

// lockAll takes filterMu and every table lock, in the lock order.
func (g *guard) lockAll() {
	g.filterMu.Lock()
	for i := range g.sh {
		g.sh[i].mu.Lock()
	}
	g.cidrMu.Lock()
}

func (g *guard) unlockAll() {
	g.cidrMu.Unlock()
	for i := range g.sh {
		g.sh[i].mu.Unlock()
	}
	g.filterMu.Unlock()
}

// filterDue reports whether the filter should be (re)built: there is none
// and there are enough entries for one, entries have outgrown it, or many
// of its bits are stale. Called without locks after every change of
// membership, so it only loads counters.
func (g *guard) filterDue() bool {
	f := g.filter.Load()
	hosts, nets := g.hosts.Load(), g.nets.Load()
	if f == nil {
		return hosts+nets >= g.filterMin
	}
	return hosts > f.hostCap || nets > f.netCap || g.stale.Load() > (hosts+nets)/2+g.filterMin
}

// maybeRebuildFilter rebuilds the filter if filterDue. The cost, O(entries)
// with every writer lock held, is amortised over the inserts or removals
// that made it due (at least half the entries), and readers never wait.
func (g *guard) maybeRebuildFilter() {
	if g.filterDue() {
		g.rebuildFilter(false)
	}
}

// rebuildFilter builds a filter from the tables' content, sized for it, and
// publishes it, or removes the filter if there are fewer than filterMin
// entries. Unless force, it does nothing if another call has made the
// rebuild no longer due.
func (g *guard) rebuildFilter(force bool) {
	g.lockAll()
	defer g.unlockAll()
	if !force && !g.filterDue() {
		return
	}
	var hosts int64
	for i := range g.sh {
		hosts += int64(g.sh[i].tab.live)
	}
	t := g.cidr.Load()
	nets := int64(t.Size())
	g.stale.Store(0)
	if hosts+nets < g.filterMin {
		g.filter.Store(nil)
		return
	}
	f := newFilter(hosts, nets, g.seed, g.filterLog)
	for i := range g.sh {
		g.sh[i].tab.eachKey(func(hi, lo uint64) { f.addHost(hashKey(hi, lo, g.seed)) })
	}
	for p := range t.All() {
		f.addNet(p)
	}
	g.filter.Store(f)
}

func (g *guard) size() int { return int(g.hosts.Load() + g.nets.Load()) }
