package sippolicy

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gaissmai/bart"
)

// Flood defaults (IvozProvider's pike 100 requests / 2 s and a 5 min ipban).
const (
	DefaultFloodWindow     = 2 * time.Second
	DefaultFloodLimit      = 100
	DefaultFloodBlockFor   = 5 * time.Minute
	DefaultFloodMaxSources = 1_000_000
)

// Bounds Validate enforces.
const (
	minFloodWindow = 100 * time.Millisecond
	maxFloodWindow = time.Hour
	maxFloodLimit  = math.MaxUint16 - 1 // counts are uint16
	maxFloodBlock  = 30 * 24 * time.Hour
	maxFloodSrc    = 1 << 28
)

// FloodConfig configures the anti-flood limiter.
type FloodConfig struct {
	// Window is the length of the sliding window over which initial
	// requests are counted. Zero means DefaultFloodWindow (2s); otherwise
	// 100ms..1h.
	Window time.Duration
	// Limit is how many initial requests a source may send within Window;
	// the next one blocks it. Zero means DefaultFloodLimit (100); at most
	// 65534.
	Limit int
	// BlockFor is how long a source that went over Limit gets no answer.
	// It is a ban length (unlike pike's remove_latency) and is not extended
	// by requests sent while blocked. Zero means DefaultFloodBlockFor (5m);
	// at most 30 days.
	BlockFor time.Duration
	// MaxSources bounds how many sources are tracked; when full, a new
	// source evicts a low-count one (see Flood). Zero means
	// DefaultFloodMaxSources (1,000,000). The number of lock shards is
	// chosen from the value given to NewFlood and kept by Reconfigure.
	MaxSources int
	// Exempt lists networks that are never counted nor blocked: the
	// platform's own servers, carriers (the trusted list) and company
	// networks. IPv4-mapped IPv6 prefixes are taken as IPv4. Nil means
	// none.
	Exempt []netip.Prefix
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c FloodConfig) withDefaults() FloodConfig {
	if c.Window == 0 {
		c.Window = DefaultFloodWindow
	}
	if c.Limit == 0 {
		c.Limit = DefaultFloodLimit
	}
	if c.BlockFor == 0 {
		c.BlockFor = DefaultFloodBlockFor
	}
	if c.MaxSources == 0 {
		c.MaxSources = DefaultFloodMaxSources
	}
	return c
}

// Validate returns every problem of c at once, each wrapping ErrConfig.
// Zero fields are valid (they mean the default).
func (c FloodConfig) Validate() error {
	_, err := c.build()
	return err
}

// floodRuntime is one validated configuration, swapped whole by Reconfigure.
type floodRuntime struct {
	window   int64 // ns
	limit    int
	blockFor int64 // ns
	max      int
	exempt   *bart.Lite // nil if no exempt networks
}

func (c FloodConfig) build() (*floodRuntime, error) {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if c.Window < minFloodWindow || c.Window > maxFloodWindow {
		bad("window %v: must be between %v and %v", c.Window, minFloodWindow, maxFloodWindow)
	}
	if c.Limit < 1 || c.Limit > maxFloodLimit {
		bad("limit %d: must be between 1 and %d", c.Limit, maxFloodLimit)
	}
	if c.BlockFor < time.Second || c.BlockFor > maxFloodBlock {
		bad("block_for %v: must be between 1s and %v", c.BlockFor, maxFloodBlock)
	}
	if c.MaxSources < 1 || c.MaxSources > maxFloodSrc {
		bad("max_sources %d: must be between 1 and %d", c.MaxSources, maxFloodSrc)
	}
	rt := &floodRuntime{
		window:   int64(c.Window),
		limit:    c.Limit,
		blockFor: int64(c.BlockFor),
		max:      c.MaxSources,
	}
	for i, p := range c.Exempt {
		if !p.IsValid() {
			bad("exempt[%d] %q: not a valid prefix", i, p)
			continue
		}
		if p.Addr().Is4In6() {
			if p.Bits() < 96 {
				bad("exempt[%d] %v: IPv4-mapped prefix shorter than /96", i, p)
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if rt.exempt == nil {
			rt.exempt = new(bart.Lite)
		}
		rt.exempt.Insert(p.Masked())
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return rt, nil
}

func (rt *floodRuntime) exempted(a netip.Addr) bool {
	return rt.exempt != nil && rt.exempt.Lookup(a)
}

// bucketOf returns the window number of t (floor division) and how far into
// that window t is, in ns.
func (rt *floodRuntime) bucketOf(ns int64) (int64, int64) {
	b := ns / rt.window
	if ns%rt.window < 0 {
		b--
	}
	return b, ns - b*rt.window
}

// Verdict is the answer to one initial request.
type Verdict struct {
	// Allow is true if the request may be processed. False means: send no
	// answer.
	Allow bool
	// JustBlocked is true for the one request that took the source over
	// the limit; the caller emits exactly one suspicious event for it.
	JustBlocked bool
	// Until is the end of the block when Allow is false.
	Until time.Time
}

// FloodStats is a snapshot of the limiter's state.
type FloodStats struct {
	Sources     int    // sources tracked now
	BlockedNow  int    // sources whose block has not ended at the given time
	BlocksTotal uint64 // blocks started since NewFlood
	Evictions   uint64 // sources forgotten to stay under MaxSources
}

// floodSource is the per-source state: 32 bytes (TestFloodSourceSize).
// Window numbers are stored truncated to 32 bits and compared by wrapping
// difference, so a source idle for 2^31 windows (136 years at 2s, 6.8 years
// at 100ms) may be mistaken for a recent one; the counts involved are then
// at most one window's worth.
type floodSource struct {
	key    [16]byte // As16 of the (unmapped) address
	until  int64    // block end, Unix ns; blocked while until > now
	bucket int32    // window number (truncated) that cur counts
	cur    uint16   // initial requests in window bucket
	prev   uint16   // initial requests in window bucket-1
}

// estimate returns the sliding-window count at window b, elapsed ns into
// it: the current window's count plus the previous window's count weighted
// by the part of the previous window still inside the sliding window
// (two-bucket interpolation). A burst straddling a window boundary is
// therefore counted almost whole.
func (s *floodSource) estimate(b int32, elapsed, window int64) int {
	cur, prev := int64(s.cur), int64(s.prev)
	switch d := b - s.bucket; {
	case d == 0:
	case d == 1:
		cur, prev = 0, cur
	case d < 0: // the clock stepped back: see advance
		return int(cur)
	default:
		return 0
	}
	return int(cur + prev*(window-elapsed)/window)
}

// advance moves s to window b. A clock that stepped back rebases s on b,
// keeping the current count but not the previous one, so the count keeps
// decaying instead of piling up in a window that lies in the future.
func (s *floodSource) advance(b int32) {
	switch d := b - s.bucket; {
	case d == 0:
	case d < 0:
		s.prev, s.bucket = 0, b
	case d == 1:
		s.prev, s.cur, s.bucket = s.cur, 0, b
	default:
		s.prev, s.cur, s.bucket = 0, 0, b
	}
}

// Flood is the anti-flood limiter. It is safe for concurrent use.
//
// Each source has a two-bucket sliding-window counter of initial requests.
// The request that makes the count exceed Limit blocks the source for
// BlockFor: Check answers Allow=false (and JustBlocked=true once) until the
// block ends, then the source starts afresh. Exempt addresses are never
// counted.
//
// State is kept in lock shards, each a slab of floodSource plus an index
// map, bounded by MaxSources: 32 bytes of state plus the index, about 64
// bytes per tracked source at 200k sources and 79 at 1M (TestFloodMemory).
// Shards have equal caps, so a shard can evict a little before the whole
// limiter holds MaxSources. When a shard is full, a new
// source evicts one of 8 randomly sampled sources (all of them in a shard
// of at most 8): an unblocked one with
// the lowest count now (among equals, the most recently counted, so a flood
// of fresh one-request sources mostly replaces its own members); a blocked
// source goes only if every sampled one is blocked, and then the one whose
// block ends first.
type Flood struct {
	seed   maphash.Seed
	shards []*floodShard

	cmu sync.Mutex // serializes Reconfigure
	cfg atomic.Pointer[floodRuntime]
}

type floodShard struct {
	mu        sync.Mutex // guards the fields below
	src       []floodSource
	idx       map[[16]byte]int32
	blocks    uint64
	evictions uint64
	_         [64]byte // keep shards' locks on separate cache lines
}

// NewFlood validates c and returns a limiter. It has no side effects.
func NewFlood(c FloodConfig) (*Flood, error) {
	rt, err := c.build()
	if err != nil {
		return nil, err
	}
	n := floodShardsFor(rt.max)
	f := &Flood{seed: maphash.MakeSeed(), shards: make([]*floodShard, n)}
	for i := range f.shards {
		f.shards[i] = &floodShard{idx: make(map[[16]byte]int32)}
	}
	f.cfg.Store(rt)
	return f, nil
}

// floodShardsFor picks the shard count: enough for parallel Check on many
// cores, few enough that each shard holds a useful eviction sample (at
// least 256 sources).
func floodShardsFor(maxSources int) int {
	n := 1
	for n < 64 && maxSources/(n*2) >= 256 {
		n *= 2
	}
	return n
}

// shardCap returns shard i's share of total (at least 1).
func shardCap(total, shards, i int) int {
	c := total / shards
	if i < total%shards {
		c++
	}
	return max(c, 1)
}

func (f *Flood) shardOf(k *[16]byte) (int, *floodShard) {
	i := int(maphash.Bytes(f.seed, k[:]) & uint64(len(f.shards)-1))
	return i, f.shards[i]
}

// Check accounts one initial request from src at now and says whether to
// process it. An invalid src is allowed and not counted (a socket never
// yields one). IPv4-mapped IPv6 addresses count as IPv4.
func (f *Flood) Check(src netip.Addr, now time.Time) Verdict {
	src = src.Unmap()
	if !src.IsValid() || f.cfg.Load().exempted(src) {
		return Verdict{Allow: true}
	}
	key := src.As16()
	nowNS := now.UnixNano()
	si, sh := f.shardOf(&key)

	sh.mu.Lock()
	defer sh.mu.Unlock()
	rt := f.cfg.Load() // under the lock: see Reconfigure
	b, elapsed := rt.bucketOf(nowNS)
	b32 := int32(b)
	i, ok := sh.idx[key]
	if !ok {
		i = sh.insertLocked(key, b32, nowNS, shardCap(rt.max, len(f.shards), si))
	}
	s := &sh.src[i]
	if s.until > nowNS {
		return Verdict{Until: time.Unix(0, s.until)}
	}
	if s.estimate(b32, elapsed, rt.window)+1 > rt.limit {
		s.until = nowNS + rt.blockFor
		s.cur, s.prev = 0, 0
		sh.blocks++
		return Verdict{JustBlocked: true, Until: time.Unix(0, s.until)}
	}
	s.advance(b32)
	if s.cur < math.MaxUint16 {
		s.cur++
	}
	return Verdict{Allow: true}
}

// Blocked reports whether src is in a block period at now, without counting
// anything: for in-dialog requests, responses and other datagrams.
func (f *Flood) Blocked(src netip.Addr, now time.Time) bool {
	src = src.Unmap()
	if !src.IsValid() || f.cfg.Load().exempted(src) {
		return false
	}
	key := src.As16()
	_, sh := f.shardOf(&key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.idx[key]
	return ok && sh.src[i].until > now.UnixNano()
}

// Forget drops the state of every source inside pfx, ending their blocks
// (an operator's unblock). It returns how many sources it dropped.
func (f *Flood) Forget(pfx netip.Prefix) int {
	if !pfx.IsValid() {
		return 0
	}
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		pfx = netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96)
	}
	pfx = pfx.Masked()
	n := 0
	for _, sh := range f.shards {
		sh.mu.Lock()
		n += sh.dropLocked(pfx.Contains)
		sh.mu.Unlock()
	}
	return n
}

// Reconfigure validates c and applies it, keeping the tracked sources and
// their blocks (a block keeps its end time). On error the old configuration
// stays. A changed Window restarts every source's count; sources inside a
// newly exempt network are dropped; a smaller MaxSources is enforced as new
// sources arrive. The shard count chosen by NewFlood is kept.
func (f *Flood) Reconfigure(c FloodConfig) error {
	rt, err := c.build()
	if err != nil {
		return err
	}
	f.cmu.Lock()
	defer f.cmu.Unlock()
	old := f.cfg.Swap(rt)
	if old.window == rt.window && rt.exempt == nil {
		return nil
	}
	for _, sh := range f.shards {
		sh.mu.Lock()
		if old.window != rt.window {
			for i := range sh.src {
				sh.src[i].cur, sh.src[i].prev = 0, 0
			}
		}
		if rt.exempt != nil {
			sh.dropLocked(rt.exempted)
		}
		sh.mu.Unlock()
	}
	return nil
}

// Stats returns a snapshot; BlockedNow counts blocks not ended at now. It
// walks every tracked source (O(MaxSources)); call it for metrics, not per
// request.
func (f *Flood) Stats(now time.Time) FloodStats {
	nowNS := now.UnixNano()
	var st FloodStats
	for _, sh := range f.shards {
		sh.mu.Lock()
		st.Sources += len(sh.src)
		st.BlocksTotal += sh.blocks
		st.Evictions += sh.evictions
		for i := range sh.src {
			if sh.src[i].until > nowNS {
				st.BlockedNow++
			}
		}
		sh.mu.Unlock()
	}
	return st
}

// insertLocked adds a fresh state for key at window b, evicting until the
// shard is under limit, and returns its slab index.
func (sh *floodShard) insertLocked(key [16]byte, b int32, nowNS int64, limit int) int32 {
	for len(sh.src) >= limit && len(sh.src) > 0 {
		sh.removeLocked(sh.victimLocked(b, nowNS))
		sh.evictions++
	}
	i := int32(len(sh.src))
	sh.src = append(sh.src, floodSource{key: key, bucket: b})
	sh.idx[key] = i
	return i
}

// floodSample is how many random sources eviction compares.
const floodSample = 8

// victimLocked picks the source to evict (see Flood).
func (sh *floodShard) victimLocked(b int32, nowNS int64) int {
	best, bestBlocked, bestCount, bestUntil, bestBucket := -1, false, 0, int64(0), int32(0)
	n := len(sh.src)
	for k := range min(n, floodSample) {
		i := k // a shard this small is compared whole
		if n > floodSample {
			i = rand.IntN(n)
		}
		s := &sh.src[i]
		blocked := s.until > nowNS
		// The count is compared with an elapsed time of zero: only the
		// order matters.
		c := s.estimate(b, 0, 1)
		var better bool
		switch {
		case best < 0:
			better = true
		case blocked != bestBlocked:
			better = !blocked
		case blocked:
			better = s.until < bestUntil
		default:
			better = c < bestCount || c == bestCount && s.bucket-bestBucket > 0
		}
		if better {
			best, bestBlocked, bestCount, bestUntil, bestBucket = i, blocked, c, s.until, s.bucket
		}
	}
	return best
}

// removeLocked deletes the state at slab index i (swap with the last).
func (sh *floodShard) removeLocked(i int) {
	delete(sh.idx, sh.src[i].key)
	last := len(sh.src) - 1
	if i != last {
		sh.src[i] = sh.src[last]
		sh.idx[sh.src[i].key] = int32(i)
	}
	sh.src[last] = floodSource{}
	sh.src = sh.src[:last]
}

// dropLocked removes every source whose address match reports true and
// returns how many it removed.
func (sh *floodShard) dropLocked(match func(netip.Addr) bool) int {
	n := 0
	for i := 0; i < len(sh.src); {
		if match(netip.AddrFrom16(sh.src[i].key).Unmap()) {
			sh.removeLocked(i)
			n++
			continue
		}
		i++
	}
	return n
}
