package sippolicy

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Calls defaults.
const (
	DefaultCallMaxDuration    = 3 * time.Hour
	DefaultCallPendingTimeout = 3 * time.Minute
	DefaultMaxCalls           = 100_000
)

// Bounds NewCalls enforces.
const (
	maxCallDuration = 30 * 24 * time.Hour
	maxCallPending  = time.Hour
	maxCallsBound   = 1 << 24
)

// CallsConfig configures call tracking.
type CallsConfig struct {
	// MaxDuration is how long an established call is kept: a call still
	// up this long after its 2xx is released (its BYE was lost). Zero
	// means DefaultCallMaxDuration (3h); otherwise 1m..30 days.
	MaxDuration time.Duration
	// PendingTimeout is how long an INVITE may wait for a final answer
	// before it is released (RFC 3261 Timer C). Zero means
	// DefaultCallPendingTimeout (3m); otherwise 1s..1h.
	PendingTimeout time.Duration
	// MaxCalls bounds how many calls are tracked; see Calls. Zero means
	// DefaultMaxCalls (100,000); otherwise 1..2^24.
	MaxCalls int
}

func (c CallsConfig) withDefaults() CallsConfig {
	if c.MaxDuration == 0 {
		c.MaxDuration = DefaultCallMaxDuration
	}
	if c.PendingTimeout == 0 {
		c.PendingTimeout = DefaultCallPendingTimeout
	}
	if c.MaxCalls == 0 {
		c.MaxCalls = DefaultMaxCalls
	}
	return c
}

// Validate returns every problem of c at once, each wrapping ErrConfig.
// Zero fields are valid (they mean the default).
func (c CallsConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if c.MaxDuration < time.Minute || c.MaxDuration > maxCallDuration {
		bad("max_duration %v: must be between 1m and %v", c.MaxDuration, maxCallDuration)
	}
	if c.PendingTimeout < time.Second || c.PendingTimeout > maxCallPending {
		bad("pending_timeout %v: must be between 1s and %v", c.PendingTimeout, maxCallPending)
	}
	if c.MaxCalls < 1 || c.MaxCalls > maxCallsBound {
		bad("max_calls %d: must be between 1 and %d", c.MaxCalls, maxCallsBound)
	}
	return errors.Join(errs...)
}

// Call is what the SIP handler knows of a call at INVITE time.
type Call struct {
	// Company is the company the call belongs to (from NewTenants).
	Company *Company
	// Incoming is true for a call from the PBX to a phone.
	Incoming bool
	// External is true when the call counts toward the brand's and the
	// company's MaxCalls (Company.External of the dialled user, or an
	// incoming call from outside the platform).
	External bool
	// Roadwarrior is the calling user when an outgoing call comes from
	// outside the company's networks, else nil. It is ignored for
	// incoming calls.
	Roadwarrior []byte
	// RoadwarriorLimit is Company.Roadwarrior(Roadwarrior). With
	// Roadwarrior set, a limit <= 0 (not a roadwarrior) or a user longer
	// than a configurable user name gives OverRoadwarrior: fail closed.
	RoadwarriorLimit int
}

// CallVerdict is the answer to an INVITE. Its zero value is not Admit: it
// comes only with a non-nil error.
type CallVerdict uint8

// Call verdicts. Every one but Admit means: refuse the INVITE.
const (
	_               CallVerdict = iota
	Admit                       // the call may proceed
	OverBrand                   // the brand is at its MaxCalls
	OverCompany                 // the company is at its MaxCalls
	OverRoadwarrior             // the roadwarrior is at its CallsFromOtherNetworks
	TableFull                   // MaxCalls calls are tracked: fail closed
)

// String returns a stable lower-case name, for logs and event details.
func (v CallVerdict) String() string {
	switch v {
	case Admit:
		return "admit"
	case OverBrand:
		return "over_brand"
	case OverCompany:
		return "over_company"
	case OverRoadwarrior:
		return "over_roadwarrior"
	case TableFull:
		return "table_full"
	}
	return fmt.Sprintf("call_verdict(%d)", uint8(v))
}

// CallCount is one company's calls now, for metrics.
type CallCount struct {
	Company, Brand string
	// Active is how many calls are tracked: established and pending.
	Active int
	// External is how many external calls hold brand and company slots.
	External int
}

// Calls tracks INVITE dialogs by Call-ID to enforce concurrent call limits
// through a Counter: per brand and per company for external calls, per
// roadwarrior user for calls from outside the company's networks. It is
// safe for concurrent use.
//
// A call goes through: Invite (pending, maybe holding slots) → Answered
// (established, always holding its slots) → Ended; or Invite → Failed.
// Expire releases what lost its end. Slots are taken at once for an
// INVITE that carries credentials or comes from the PBX, and only when the
// call is answered for a bare INVITE, so that INVITEs anyone can forge do
// not use other users' slots.
//
// Call-IDs are not stored: a call is known by a seeded 64-bit hash of its
// Call-ID, so an entry's size does not depend on the attacker (two of
// 100,000 calls collide with probability about 3e-10). Entries sit in lock
// shards, each bounded by its share of MaxCalls. When a shard is full, a
// new call evicts the oldest entry that holds no slot and is not
// established (a bare INVITE waiting for its challenge); if there is none
// Invite returns TableFull. A bare-INVITE flood thus replaces its own
// entries and cannot lock out calls holding slots, but it can evict a bare
// INVITE whose call is then answered untracked.
//
// The Counter is called with the call's shard locked on Invite and
// Answered, so a slow shared Counter slows other calls of the shard;
// releases are made after unlocking.
type Calls struct {
	seed        maphash.Seed
	shards      []*callShard
	ctr         Counter
	maxDuration int64 // ns
	pending     int64 // ns
	ctrErrors   atomic.Uint64
}

type callShard struct {
	mu    sync.Mutex // guards the fields below
	m     map[uint64]*callEntry
	cap   int
	old   callEntry // sentinel of the evictable list, oldest at old.next
	stats map[*Company]*CallCount
	_     [64]byte // keep shards' locks on separate cache lines
}

// callEntry is one tracked call.
type callEntry struct {
	id          uint64
	company     *Company
	since       int64 // Unix ns of the last state change
	keys        [3]string
	n           uint8 // keys in use
	external    bool
	taken       bool // slots taken: the keys, if any, are counted in the Counter
	established bool
	prev, next  *callEntry // evictable list; nil when not in it
}

func (e *callEntry) holds() bool     { return e.taken && e.n > 0 }
func (e *callEntry) evictable() bool { return !e.established && !e.holds() }

// NewCalls validates c and returns an empty call table counting in ctr. It
// has no side effects.
func NewCalls(c CallsConfig, ctr Counter) (*Calls, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if ctr == nil {
		return nil, fmt.Errorf("%w: nil Counter", ErrConfig)
	}
	c = c.withDefaults()
	n := floodShardsFor(c.MaxCalls)
	cs := &Calls{
		seed:        maphash.MakeSeed(),
		shards:      make([]*callShard, n),
		ctr:         ctr,
		maxDuration: int64(c.MaxDuration),
		pending:     int64(c.PendingTimeout),
	}
	for i := range cs.shards {
		sh := &callShard{
			m:     make(map[uint64]*callEntry),
			cap:   shardCap(c.MaxCalls, n, i),
			stats: make(map[*Company]*CallCount),
		}
		sh.old.prev, sh.old.next = &sh.old, &sh.old
		cs.shards[i] = sh
	}
	return cs, nil
}

func (c *Calls) shardOf(callID []byte) (uint64, *callShard) {
	h := maphash.Bytes(c.seed, callID)
	return h, c.shards[(h>>32)&uint64(len(c.shards)-1)]
}

// callPlan is what an INVITE must check or take.
type callPlan struct {
	keys   [3]string
	limits [3]int
	over   [3]CallVerdict
	n      int
}

func (p *callPlan) add(key string, limit int, over CallVerdict) {
	p.keys[p.n], p.limits[p.n], p.over[p.n] = key, limit, over
	p.n++
}

var errNoCompany = errors.New("sippolicy: Call without a Company from NewTenants")

// plan returns the slots call needs, or a verdict other than Admit.
func plan(call Call) (callPlan, CallVerdict, error) {
	var p callPlan
	co := call.Company
	if co == nil || co.Brand == nil || co.key == "" {
		return p, 0, errNoCompany
	}
	if call.External {
		p.add(co.Brand.key, co.Brand.MaxCalls, OverBrand)
		p.add(co.key, co.maxCalls, OverCompany)
	}
	if !call.Incoming && call.Roadwarrior != nil {
		if call.RoadwarriorLimit <= 0 || len(call.Roadwarrior) > maxNameLen {
			return p, OverRoadwarrior, nil
		}
		p.add("rw/"+co.Name+"/"+string(call.Roadwarrior), call.RoadwarriorLimit, OverRoadwarrior)
	}
	return p, Admit, nil
}

// Invite is called for an initial INVITE (no To tag) with the Call-ID
// callID.
//
// The first INVITE of a Call-ID checks the limits (a count at or above its
// limit is over; brand first, then company, then roadwarrior) and, when
// take is true (the INVITE carries credentials, or comes from the PBX),
// takes the slots at once: the call is pending. When take is false it only
// checks: a bare INVITE is challenged by the PBX and must not use a slot,
// so that a spoofer cannot exhaust another user's slots. A call that is
// neither External nor from a roadwarrior is tracked but takes no slot.
//
// A repeated INVITE of a Call-ID (a retransmission, or the authenticated
// retry after a 407) is admitted without a check unless it has taken no
// slots yet and take is now true: then call (which replaces the first
// INVITE's) is checked and its slots taken. Slots are never taken twice.
// A refused repeated INVITE forgets the Call-ID.
//
// A verdict other than Admit means: refuse the INVITE. A non-nil error
// (the Counter's, or a Call without a Company) comes with the zero
// CallVerdict: refuse the INVITE too (fail closed).
func (c *Calls) Invite(now time.Time, callID []byte, call Call, take bool) (CallVerdict, error) {
	id, sh := c.shardOf(callID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[id]
	if e != nil && (e.taken || e.established || !take) {
		return Admit, nil
	}
	p, v, err := plan(call)
	if err != nil || v != Admit {
		if e != nil {
			sh.removeLocked(e)
		}
		return v, err
	}
	if e == nil && len(sh.m) >= sh.cap && sh.old.next == &sh.old {
		return TableFull, nil
	}
	switch {
	case p.n == 0: // nothing to count
	case take:
		var ok bool
		var full int
		ok, full, err = c.ctr.Acquire(p.keys[:p.n], p.limits[:p.n])
		switch {
		case err != nil:
			v, err = 0, fmt.Errorf("sippolicy: counting the call: %w", err)
		case !ok && (full < 0 || full >= p.n):
			v, err = 0, fmt.Errorf("sippolicy: counting the call: Counter.Acquire reported key %d of %d full", full, p.n)
		case !ok:
			v = p.over[full]
		}
	default:
		v, err = c.checkLocked(&p)
	}
	if err != nil || v != Admit {
		if e != nil {
			sh.removeLocked(e)
		}
		return v, err
	}
	if e == nil {
		if len(sh.m) >= sh.cap {
			sh.removeLocked(sh.old.next)
		}
		e = &callEntry{id: id}
		sh.m[id] = e
	} else {
		sh.statLocked(e, -1)
	}
	e.company, e.keys, e.n = call.Company, p.keys, uint8(p.n)
	e.external, e.taken, e.since = call.External, take, now.UnixNano()
	sh.statLocked(e, +1)
	sh.listLocked(e)
	return Admit, nil
}

// checkLocked compares the counts of p's limited keys with their limits.
func (c *Calls) checkLocked(p *callPlan) (CallVerdict, error) {
	for i := range p.n {
		if p.limits[i] <= 0 {
			continue
		}
		n, err := c.ctr.Count(p.keys[i])
		if err != nil {
			return 0, fmt.Errorf("sippolicy: reading the call count: %w", err)
		}
		if n >= p.limits[i] {
			return p.over[i], nil
		}
	}
	return Admit, nil
}

// Answered is called for a 2xx to the initial INVITE: the call is
// established. A call that took no slots (a bare INVITE the PBX did not
// challenge) takes them now without a limit check: it is up. An unknown or
// already established Call-ID is ignored. It does not allocate.
func (c *Calls) Answered(now time.Time, callID []byte) {
	id, sh := c.shardOf(callID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[id]
	if e == nil || e.established {
		return
	}
	sh.statLocked(e, -1)
	if !e.taken && e.n > 0 {
		if err := c.ctr.Add(e.keys[:e.n]); err != nil {
			c.ctrErrors.Add(1)
		} else {
			e.taken = true
		}
	}
	e.established, e.since = true, now.UnixNano()
	sh.statLocked(e, +1)
	sh.listLocked(e)
}

// Failed is called for a final answer >= 300 to the initial INVITE: the
// call's slots are released and the Call-ID forgotten. An established
// call is left alone (the answer was to a re-INVITE), as is an unknown
// Call-ID. It does not allocate.
func (c *Calls) Failed(now time.Time, callID []byte) {
	c.end(callID, false)
}

// Ended is called for a BYE or CANCEL: the call's slots are released and
// the Call-ID forgotten. An unknown Call-ID is ignored. It does not
// allocate.
func (c *Calls) Ended(now time.Time, callID []byte) {
	c.end(callID, true)
}

func (c *Calls) end(callID []byte, established bool) {
	id, sh := c.shardOf(callID)
	sh.mu.Lock()
	e := sh.m[id]
	if e == nil || e.established && !established {
		sh.mu.Unlock()
		return
	}
	sh.removeLocked(e)
	sh.mu.Unlock()
	c.release(e)
}

func (c *Calls) release(e *callEntry) {
	if e.holds() {
		if err := c.ctr.Release(e.keys[:e.n]); err != nil {
			c.ctrErrors.Add(1)
		}
	}
}

// Expire forgets, releasing their slots, the pending calls older than
// PendingTimeout and the established calls answered more than MaxDuration
// ago, and returns how many. It walks every call: call it periodically
// (every few seconds), not per message.
func (c *Calls) Expire(now time.Time) int {
	nowNS := now.UnixNano()
	n := 0
	var gone []*callEntry
	for _, sh := range c.shards {
		gone = gone[:0]
		sh.mu.Lock()
		for _, e := range sh.m {
			limit := c.pending
			if e.established {
				limit = c.maxDuration
			}
			if nowNS-e.since >= limit {
				sh.removeLocked(e)
				gone = append(gone, e)
			}
		}
		sh.mu.Unlock()
		for _, e := range gone {
			c.release(e)
		}
		n += len(gone)
	}
	return n
}

// Active returns, per company with tracked calls, how many are active and
// how many hold external slots, sorted by brand then company name. Its
// cost grows with the number of companies with calls, not of calls.
func (c *Calls) Active() []CallCount {
	type name struct{ brand, company string }
	sum := make(map[name]*CallCount)
	for _, sh := range c.shards {
		sh.mu.Lock()
		for co, st := range sh.stats {
			k := name{co.Brand.Name, co.Name}
			if t := sum[k]; t != nil {
				t.Active += st.Active
				t.External += st.External
			} else {
				cc := *st
				sum[k] = &cc
			}
		}
		sh.mu.Unlock()
	}
	out := make([]CallCount, 0, len(sum))
	for _, cc := range sum {
		out = append(out, *cc)
	}
	slices.SortFunc(out, func(a, b CallCount) int {
		return cmp.Or(cmp.Compare(a.Brand, b.Brand), cmp.Compare(a.Company, b.Company))
	})
	return out
}

// Len returns how many calls are tracked.
func (c *Calls) Len() int {
	n := 0
	for _, sh := range c.shards {
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// CounterErrors returns how many Counter.Add and Counter.Release calls
// failed since NewCalls. Such a failure leaves a shared count too low
// (Add) or too high (Release) until the backend recovers; nothing else
// can be done about it here.
func (c *Calls) CounterErrors() uint64 { return c.ctrErrors.Load() }

// removeLocked forgets e.
func (sh *callShard) removeLocked(e *callEntry) {
	delete(sh.m, e.id)
	sh.statLocked(e, -1)
	sh.unlinkLocked(e)
}

// statLocked adds (d = 1) or removes (d = -1) e's share of its company's
// counts.
func (sh *callShard) statLocked(e *callEntry, d int) {
	st := sh.stats[e.company]
	if st == nil {
		st = &CallCount{Company: e.company.Name, Brand: e.company.Brand.Name}
		sh.stats[e.company] = st
	}
	st.Active += d
	if e.external && e.holds() {
		st.External += d
	}
	if st.Active == 0 {
		delete(sh.stats, e.company)
	}
}

// listLocked puts e at the end of the evictable list if it is evictable
// and not yet there, and takes it out if it is no longer evictable.
func (sh *callShard) listLocked(e *callEntry) {
	switch {
	case e.evictable() && e.next == nil:
		e.prev, e.next = sh.old.prev, &sh.old
		e.prev.next, sh.old.prev = e, e
	case !e.evictable():
		sh.unlinkLocked(e)
	}
}

func (sh *callShard) unlinkLocked(e *callEntry) {
	if e.next == nil {
		return
	}
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}
