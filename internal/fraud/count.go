package fraud

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// The sliding window: slotCount slots of slotSeconds each. An event counts
// while its slot is one of the newest slotCount slots, that is for at least
// (slotCount-1)*slotSeconds = 50 s and at most slotCount*slotSeconds = 60 s.
const (
	slotCount     = 6
	slotSeconds   = 10
	windowSeconds = slotCount * slotSeconds
	windowLabel   = "1m"
)

// epoch is the origin of the engine's compact clock: int32 seconds since
// epoch cover 1952..2088, slot numbers (seconds/10) far more.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// secs converts t to the compact clock, clamped to the int32 range.
func secs(t time.Time) int32 {
	d := t.Unix() - epoch.Unix()
	return int32(max(min(d, math.MaxInt32), math.MinInt32))
}

func fromSecs(s int32) time.Time { return epoch.Add(time.Duration(s) * time.Second) }

// slotOf returns the window slot number of compact time s (floor division).
func slotOf(s int32) int32 {
	if s < 0 {
		return (s - slotSeconds + 1) / slotSeconds
	}
	return s / slotSeconds
}

func slotIndex(n int32) int {
	i := n % slotCount
	if i < 0 {
		i += slotCount
	}
	return int(i)
}

// slots is one sliding-window counter; the slot numbers it holds are
// head-slotCount+1 .. head (kept by the owner).
type slots [slotCount]uint16

// roll clears the slots that leave the window when head moves to s > head.
func (w *slots) roll(head, s int32) {
	if s-head >= slotCount {
		*w = slots{}
		return
	}
	for n := head + 1; n <= s; n++ {
		w[slotIndex(n)] = 0
	}
}

// sum returns the total of the slots still inside the window at slot s.
func (w *slots) sum(head, s int32) int {
	lo := max(head, s) - slotCount + 1
	t := 0
	for n := max(lo, head-slotCount+1); n <= head; n++ {
		t += int(w[slotIndex(n)])
	}
	return t
}

func (w *slots) add(head int32, v int) {
	i := slotIndex(head)
	w[i] = uint16(min(int(w[i])+v, math.MaxUint16))
}

// source is the per-source counting state: 56 bytes (see TestSourceSize).
// unk counts failures not attributed to a known user, kn failures of known
// users; both share head. first and last bound the events counted (compact
// seconds).
type source struct {
	key   [16]byte // As4 in the first 4 bytes when !v6
	unk   slots
	kn    slots
	head  int32
	first int32
	last  int32
	v6    bool
}

func (s *source) addr() netip.Addr {
	if s.v6 {
		return netip.AddrFrom16(s.key)
	}
	return netip.AddrFrom4([4]byte(s.key[:4]))
}

// advance moves the window to slot n (never backwards: a clock that steps
// back counts into the newest slot).
func (s *source) advance(n int32) int32 {
	if n > s.head {
		s.unk.roll(s.head, n)
		s.kn.roll(s.head, n)
		s.head = n
	}
	return s.head
}

// score returns (unknown, known) weighted failures in the window at slot n.
func (s *source) score(n int32) (int, int) {
	return s.unk.sum(s.head, n), s.kn.sum(s.head, n)
}

// knownUser is one user that logged in successfully from a source.
type knownUser struct {
	h     uint64 // maphash of service "\x00" user
	succ  int32  // last success, compact seconds
	head  int32  // window head of fails
	fails slots  // this user's failures
}

// natSource holds the known users of one address. Only addresses with a
// recent success have one, so the common per-source state stays small.
type natSource struct {
	key    [16]byte // As16 of the address
	pos    int      // index in cshard.natList
	latest int32    // newest success
	oldest int32    // oldest success (may be stale-low; prune recomputes)
	users  []knownUser
	idx    map[uint64]int32 // position in users by hash, once users is long
}

// natIndexFrom is the user count above which natSource keeps an index map
// instead of scanning users.
const natIndexFrom = 32

func (ns *natSource) find(h uint64) int {
	if ns.idx != nil {
		if i, ok := ns.idx[h]; ok {
			return int(i)
		}
		return -1
	}
	for i := range ns.users {
		if ns.users[i].h == h {
			return i
		}
	}
	return -1
}

// prune forgets users whose last success is before cutoff and returns how
// many it forgot.
func (ns *natSource) prune(cutoff int32) int {
	if ns.oldest >= cutoff {
		return 0
	}
	n := 0
	ns.oldest = math.MaxInt32
	for _, u := range ns.users {
		if u.succ >= cutoff {
			ns.users[n] = u
			ns.oldest = min(ns.oldest, u.succ)
			n++
		}
	}
	gone := len(ns.users) - n
	if gone > 0 {
		clear(ns.users[n:])
		ns.users = ns.users[:n]
		ns.reindex()
	}
	return gone
}

func (ns *natSource) reindex() {
	if len(ns.users) <= natIndexFrom {
		ns.idx = nil
		return
	}
	ns.idx = make(map[uint64]int32, len(ns.users))
	for i, u := range ns.users {
		ns.idx[u.h] = int32(i)
	}
}

// cshard is one lock shard of the counting state. Sources live in a slab
// (src) so that eviction can sample uniformly at random.
type cshard struct {
	mu       sync.Mutex // guards the fields below
	src      []source
	idx4     map[[4]byte]int32
	idx6     map[[16]byte]int32
	nat      map[[16]byte]*natSource
	natList  []*natSource
	natUsers int // users across nat
	cursor   int // idle sweep position in src
	_        [64]byte
}

func newCShard() *cshard {
	return &cshard{
		idx4: make(map[[4]byte]int32),
		idx6: make(map[[16]byte]int32),
		nat:  make(map[[16]byte]*natSource),
	}
}

// countShardsFor picks the number of counting shards: enough for parallel
// Emit on many cores, few enough that each holds a useful sample for
// eviction (at least 256 sources). Fixed for the engine's lifetime.
func countShardsFor(maxSources int) int {
	n := 1
	for n < 64 && maxSources/(n*2) >= 256 {
		n *= 2
	}
	return n
}

// capFor returns shard i's share of total (the shares add up to total; at
// least 1).
func capFor(total, shards, i int) int {
	c := total / shards
	if i < total%shards {
		c++
	}
	return max(c, 1)
}

func (e *Engine) cshardOf(h uint64) (int, *cshard) {
	i := int(h & uint64(len(e.shards)-1))
	return i, e.shards[i]
}

// lookupLocked returns the slab index of a's state, or -1.
func (sh *cshard) lookupLocked(a netip.Addr) int {
	if a.Is4() {
		if i, ok := sh.idx4[a.As4()]; ok {
			return int(i)
		}
		return -1
	}
	if i, ok := sh.idx6[a.As16()]; ok {
		return int(i)
	}
	return -1
}

// insertLocked adds a fresh state for a at compact time now, evicting until
// the shard is under limit. It returns the new index and the evictions.
func (sh *cshard) insertLocked(a netip.Addr, now int32, limit int) (int, int) {
	evicted := 0
	for len(sh.src) >= limit && len(sh.src) > 0 {
		sh.removeLocked(sh.victimLocked(slotOf(now)))
		evicted++
	}
	s := source{head: slotOf(now), first: now, last: now}
	if a.Is4() {
		k := a.As4()
		copy(s.key[:], k[:])
		sh.idx4[k] = int32(len(sh.src))
	} else {
		s.key, s.v6 = a.As16(), true
		sh.idx6[s.key] = int32(len(sh.src))
	}
	sh.src = append(sh.src, s)
	return len(sh.src) - 1, evicted
}

// evictSample is how many random states eviction compares.
const evictSample = 8

// victimLocked picks the state to evict: among evictSample random states,
// the one with the lowest score now; among equal scores, the one with the
// newest last event. A flood of one-event sources therefore cannot push out
// a source with a higher score (it would have to be drawn evictSample times
// in a row), and mostly evicts its own newest members rather than a source
// with the same score that was there before it.
func (sh *cshard) victimLocked(now int32) int {
	best, bestScore, bestLast := -1, 0, int32(0)
	for range evictSample {
		i := rand.IntN(len(sh.src))
		s := &sh.src[i]
		u, k := s.score(now)
		if best < 0 || u+k < bestScore || u+k == bestScore && s.last > bestLast {
			best, bestScore, bestLast = i, u+k, s.last
		}
	}
	return best
}

// removeLocked deletes the state at slab index i (swap with the last).
func (sh *cshard) removeLocked(i int) {
	s := &sh.src[i]
	if s.v6 {
		delete(sh.idx6, s.key)
	} else {
		delete(sh.idx4, [4]byte(s.key[:4]))
	}
	last := len(sh.src) - 1
	if i != last {
		sh.src[i] = sh.src[last]
		m := &sh.src[i]
		if m.v6 {
			sh.idx6[m.key] = int32(i)
		} else {
			sh.idx4[[4]byte(m.key[:4])] = int32(i)
		}
	}
	sh.src[last] = source{}
	sh.src = sh.src[:last]
}

// natLocked returns a's known users, pruned at cutoff, or nil.
func (sh *cshard) natLocked(a netip.Addr, cutoff int32) *natSource {
	if len(sh.nat) == 0 {
		return nil
	}
	ns := sh.nat[a.As16()]
	if ns != nil {
		sh.natUsers -= ns.prune(cutoff)
		if len(ns.users) == 0 {
			sh.dropNATLocked(ns)
			return nil
		}
	}
	return ns
}

func (sh *cshard) dropNATLocked(ns *natSource) {
	sh.natUsers -= len(ns.users)
	delete(sh.nat, ns.key)
	last := len(sh.natList) - 1
	if ns.pos != last {
		m := sh.natList[last]
		sh.natList[ns.pos] = m
		m.pos = ns.pos
	}
	sh.natList[last] = nil
	sh.natList = sh.natList[:last]
}

// recordSuccessLocked marks user hash h as known at a. The shard keeps at
// most limit known users in all (the address whose newest success is oldest
// is forgotten, sampled) and at most maxUsers per address (the user whose
// last success is oldest makes room).
func (sh *cshard) recordSuccessLocked(a netip.Addr, h uint64, now, cutoff int32, maxUsers, limit int) {
	ns := sh.natLocked(a, cutoff)
	if ns != nil {
		ns.latest = max(ns.latest, now)
		if i := ns.find(h); i >= 0 {
			ns.users[i].succ = max(ns.users[i].succ, now)
			return
		}
	}
	// A new user: make room in the shard, never evicting ns itself.
	for tries := 0; sh.natUsers >= limit && tries < 4*evictSample; tries++ {
		var v *natSource
		for range evictSample {
			c := sh.natList[rand.IntN(len(sh.natList))]
			if c != ns && (v == nil || c.latest < v.latest) {
				v = c
			}
		}
		if v != nil {
			sh.dropNATLocked(v)
		} else if len(sh.natList) == 1 {
			break // only ns is left
		}
	}
	if ns == nil {
		ns = &natSource{key: a.As16(), pos: len(sh.natList), oldest: now, latest: now}
		sh.nat[ns.key] = ns
		sh.natList = append(sh.natList, ns)
	}
	u := knownUser{h: h, succ: now, head: slotOf(now)}
	ns.oldest = min(ns.oldest, now)
	if len(ns.users) < maxUsers && sh.natUsers < limit {
		ns.users = append(ns.users, u)
		sh.natUsers++
		if ns.idx != nil {
			ns.idx[h] = int32(len(ns.users) - 1)
		} else if len(ns.users) > natIndexFrom {
			ns.reindex()
		}
		return
	}
	if len(ns.users) == 0 {
		// Still over the limit (it was just lowered): record nothing now.
		sh.dropNATLocked(ns)
		return
	}
	// Full: the user whose last success is oldest makes room.
	old := 0
	for i := range ns.users {
		if ns.users[i].succ < ns.users[old].succ {
			old = i
		}
	}
	if ns.idx != nil {
		delete(ns.idx, ns.users[old].h)
		ns.idx[h] = int32(old)
	}
	ns.users[old] = u
}

// verdict is what counting one event decided.
type verdict struct {
	ban          bool
	unknown      int // weighted failures not from known users, in the window
	total        int // all weighted failures in the window
	threshold    int // the threshold that was exceeded
	knownUsers   int
	first, last  time.Time
	byUnknownCap bool // banned because unknown > Threshold (not the NAT-raised one)
}

// countLocked adds weight w of an event from a (naming user hash uh, or
// hasUser false) at compact time now and decides whether a is banned.
func (e *Engine) countLocked(sh *cshard, si int, p *policy, a netip.Addr, hasUser bool, uh uint64, w int, now int32) verdict {
	limit := capFor(p.maxSources, len(e.shards), si)
	i := sh.lookupLocked(a)
	if i < 0 {
		var ev int
		i, ev = sh.insertLocked(a, now, limit)
		if ev > 0 {
			e.evicted.Add(uint64(ev))
		}
	}
	s := &sh.src[i]
	n := s.advance(slotOf(now))
	if u, k := s.score(n); u+k == 0 {
		s.first = now // a new burst; the sweep has not dropped the idle state yet
	}
	s.last = max(s.last, now)

	T := p.cfg.Threshold
	knownUsers := 0
	counted := false
	if ns := sh.natLocked(a, now-p.natWindow); ns != nil {
		knownUsers = len(ns.users)
		if hasUser {
			if j := ns.find(uh); j >= 0 {
				u := &ns.users[j]
				if n > u.head {
					u.fails.roll(u.head, n)
					u.head = n
				}
				prev := u.fails.sum(u.head, n)
				if prev+w <= T {
					s.kn.add(n, w)
				} else {
					// Brute force on one real account: from here on this
					// user's failures in the window all count as unknown,
					// those already counted as known included.
					if prev <= T && u.head == n {
						for m := n - slotCount + 1; m <= n; m++ {
							x := min(u.fails[slotIndex(m)], s.kn[slotIndex(m)])
							s.kn[slotIndex(m)] -= x
							s.unk.add(m, int(x))
						}
					}
					s.unk.add(n, w)
				}
				u.fails.add(u.head, w)
				counted = true
			}
		}
	}
	if !counted {
		s.unk.add(n, w)
	}

	unk, kn := s.score(n)
	factor := max(1, min(knownUsers, p.cfg.NATMaxFactor))
	v := verdict{unknown: unk, total: unk + kn, knownUsers: knownUsers}
	switch {
	case unk > T:
		v.ban, v.threshold, v.byUnknownCap = true, T, true
	case unk+kn > T*factor:
		v.ban, v.threshold = true, T*factor
	}
	if v.ban {
		v.first, v.last = fromSecs(s.first), fromSecs(s.last)
		sh.removeLocked(i)
	}
	return v
}

// forgetLocked drops the counting state of every source inside pfx and
// resets the failure counters of their known users (known users stay).
func (sh *cshard) forgetLocked(pfx netip.Prefix) {
	if isHost(pfx) {
		if i := sh.lookupLocked(pfx.Addr()); i >= 0 {
			sh.removeLocked(i)
		}
		if ns := sh.nat[pfx.Addr().As16()]; ns != nil {
			for j := range ns.users {
				ns.users[j].fails = slots{}
			}
		}
		return
	}
	for i := 0; i < len(sh.src); {
		if pfx.Contains(sh.src[i].addr()) {
			sh.removeLocked(i)
			continue
		}
		i++
	}
	for _, ns := range sh.natList {
		if pfx.Contains(netip.AddrFrom16(ns.key).Unmap()) {
			for j := range ns.users {
				ns.users[j].fails = slots{}
			}
		}
	}
}

// sweepLocked drops up to budget idle states (nothing counted within the
// window) from the cursor on, and trims the shard to limit.
func (sh *cshard) sweepLocked(now int32, budget, limit int) (evicted int) {
	n := slotOf(now)
	for range budget {
		if len(sh.src) == 0 {
			break
		}
		if sh.cursor >= len(sh.src) {
			sh.cursor = 0
		}
		s := &sh.src[sh.cursor]
		if u, k := s.score(n); u+k == 0 {
			sh.removeLocked(sh.cursor)
			continue
		}
		sh.cursor++
	}
	for len(sh.src) > limit {
		sh.removeLocked(sh.victimLocked(n))
		evicted++
	}
	return evicted
}

// pruneNATLocked forgets users whose last success is before cutoff.
func (sh *cshard) pruneNATLocked(cutoff int32) {
	for i := 0; i < len(sh.natList); {
		ns := sh.natList[i]
		sh.natUsers -= ns.prune(cutoff)
		if len(ns.users) == 0 {
			sh.dropNATLocked(ns)
			continue
		}
		i++
	}
}
