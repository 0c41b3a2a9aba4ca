package sippolicy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"time"
)

// Challenges defaults.
const (
	DefaultChallengeWindow     = time.Hour
	DefaultChallengeMaxEntries = 1 << 20
)

// Bounds NewChallenges enforces.
const (
	maxChallengeWindow  = 7 * 24 * time.Hour
	maxChallengeEntries = 1 << 28
)

// ChallengesConfig configures challenge tracking.
type ChallengesConfig struct {
	// Window is how long a (source, user) pair is remembered after its
	// last challenge: a pair challenged again later starts afresh. It is
	// kept to the second. Zero means DefaultChallengeWindow (1h);
	// otherwise 1s..7 days.
	Window time.Duration
	// MaxEntries bounds how many pairs are tracked; when full, a new pair
	// evicts the least recently challenged of a sample (see Challenges).
	// Zero means DefaultChallengeMaxEntries (1,048,576); otherwise
	// 1..2^28.
	MaxEntries int
}

func (c ChallengesConfig) withDefaults() ChallengesConfig {
	if c.Window == 0 {
		c.Window = DefaultChallengeWindow
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultChallengeMaxEntries
	}
	return c
}

// Validate returns every problem of c at once, each wrapping ErrConfig.
// Zero fields are valid (they mean the default).
func (c ChallengesConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Window < time.Second || c.Window > maxChallengeWindow {
		errs = append(errs, fmt.Errorf("%w: window %v: must be between 1s and %v", ErrConfig, c.Window, maxChallengeWindow))
	}
	if c.MaxEntries < 1 || c.MaxEntries > maxChallengeEntries {
		errs = append(errs, fmt.Errorf("%w: max_entries %d: must be between 1 and %d", ErrConfig, c.MaxEntries, maxChallengeEntries))
	}
	return errors.Join(errs...)
}

// Challenges counts the authentication challenges (401/407) the PBX sends
// to each (source address, user) pair, so that the SIP handler can tell a
// normal registration or call – challenged once, then successful – from
// password guessing – challenged again and again. It is safe for
// concurrent use.
//
// A pair is keyed by the source address (IPv4-mapped as IPv4) and a seeded
// 64-bit hash of the user; the user's bytes are not kept. The count is
// reset by Success and when the pair was last challenged Window or more
// ago. The handler should call Success for every answer that proves the
// credentials right: a 2xx, but also any other final answer but 401/407 to
// a request that carried credentials (a call that is busy or not answered
// was authenticated).
//
// State is kept in lock shards of maps, 32 bytes of key and value per pair
// plus the maps' overhead, which depends on how far each map is into its
// growth: about 53 bytes per pair at 200k pairs (TestChallengesMemory), up
// to 85 at other sizes (80 at the default 1M pairs: 84 MB). Each shard holds its share of MaxEntries; when
// it is full, a new pair evicts the least recently challenged of 8 pairs
// sampled from the map's random iteration start (among equals, the one
// with the lowest count), so a flood of new pairs mostly replaces pairs
// that went quiet, not a guesser that keeps trying.
type Challenges struct {
	seed   maphash.Seed
	window uint32 // seconds
	shards []*challengeShard
}

type challengeKey struct {
	addr [16]byte // As16 of the unmapped source
	user uint64   // maphash of the user
}

type challengeVal struct {
	last uint32 // Unix seconds of the last challenge, truncated to 32 bits
	n    uint32 // challenges since the last success (saturating)
}

type challengeShard struct {
	mu        sync.Mutex // guards the fields below
	m         map[challengeKey]challengeVal
	cap       int
	evictions uint64
	_         [64]byte // keep shards' locks on separate cache lines
}

// NewChallenges validates c and returns an empty tracker. It has no side
// effects.
func NewChallenges(c ChallengesConfig) (*Challenges, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c = c.withDefaults()
	n := floodShardsFor(c.MaxEntries)
	ch := &Challenges{
		seed:   maphash.MakeSeed(),
		window: uint32((c.Window + time.Second - 1) / time.Second),
		shards: make([]*challengeShard, n),
	}
	for i := range ch.shards {
		ch.shards[i] = &challengeShard{m: make(map[challengeKey]challengeVal), cap: shardCap(c.MaxEntries, n, i)}
	}
	return ch, nil
}

func (c *Challenges) keyOf(src netip.Addr, user []byte) (challengeKey, *challengeShard) {
	k := challengeKey{addr: src.As16(), user: maphash.Bytes(c.seed, user)}
	// Mix the address into the user hash: a source's pairs spread over
	// the shards, and (the hash being seeded) nobody can aim at one shard.
	h := mix64(mix64(k.user^binary.LittleEndian.Uint64(k.addr[:8])) ^ binary.LittleEndian.Uint64(k.addr[8:]))
	return k, c.shards[h&uint64(len(c.shards)-1)]
}

// mix64 is SplitMix64's finaliser: every output bit depends on every input
// bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Challenge records one 401/407 sent to user at src and returns how many
// challenges the pair got since its last success, counting from 1 for the
// first. The count starts afresh when the pair's previous challenge was
// Window or more ago. The caller counts a rejection only when n >= 2: the
// first challenge of a normal registration or call never counts. An
// invalid src is not tracked and gives 0. It does not allocate for a pair
// already tracked.
func (c *Challenges) Challenge(now time.Time, src netip.Addr, user []byte) (n int) {
	src = src.Unmap()
	if !src.IsValid() {
		return 0
	}
	k, sh := c.keyOf(src, user)
	nowS := uint32(now.Unix())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	v, ok := sh.m[k]
	// A clock stepped back (negative age) keeps the count going.
	if ok && int32(nowS-v.last) < int32(c.window) {
		if v.n < math.MaxUint32 {
			v.n++
		}
	} else {
		if !ok && len(sh.m) >= sh.cap {
			sh.evictLocked(nowS)
		}
		v.n = 1
	}
	v.last = nowS
	sh.m[k] = v
	return int(v.n)
}

// challengeSample is how many pairs eviction compares.
const challengeSample = 8

// evictLocked forgets the least recently challenged of a few pairs taken
// from the map's random iteration start; among equals, the one with the
// lowest count.
func (sh *challengeShard) evictLocked(nowS uint32) {
	var victim challengeKey
	var vAge int64
	var vN uint32
	k := 0
	for key, v := range sh.m {
		age := int64(int32(nowS - v.last))
		if k == 0 || age > vAge || age == vAge && v.n < vN {
			victim, vAge, vN = key, age, v.n
		}
		if k++; k == challengeSample {
			break
		}
	}
	if k > 0 {
		delete(sh.m, victim)
		sh.evictions++
	}
}

// Success forgets the pair (src, user): its credentials were accepted. It
// does not allocate.
func (c *Challenges) Success(now time.Time, src netip.Addr, user []byte) {
	src = src.Unmap()
	if !src.IsValid() {
		return
	}
	k, sh := c.keyOf(src, user)
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
}

// Len returns how many pairs are tracked, including those whose window has
// passed and that wait to be reused or evicted.
func (c *Challenges) Len() int {
	n := 0
	for _, sh := range c.shards {
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns how many pairs were forgotten to stay under
// MaxEntries.
func (c *Challenges) Evictions() uint64 {
	var n uint64
	for _, sh := range c.shards {
		sh.mu.Lock()
		n += sh.evictions
		sh.mu.Unlock()
	}
	return n
}
