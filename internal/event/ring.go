package event

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Ring keeps the latest events in a fixed-size buffer and hands new events to
// followers. It is the memory behind "list recent events" and "events
// --follow", and the evidence the fraud engine quotes when it bans. Memory is
// bounded by the size given to NewRing; a follower that does not keep up
// loses events (counted in Dropped) rather than slowing down Emit.
type Ring struct {
	mu     sync.Mutex // guards the fields below
	buf    []Event
	next   int  // index the next event is written to
	full   bool // buf has wrapped at least once
	subs   map[*subscriber]struct{}
	closed bool

	// Suspicious events are chained per source, newest first, so that
	// Recent for one source's suspicious events (the fraud engine's
	// evidence for a ban) reads that source's events only instead of
	// scanning the ring. meta[i] describes buf[i]; newest maps a source to
	// its newest suspicious event still in the ring (at most one entry per
	// slot, removed when that slot is overwritten).
	meta   []slotMeta
	seq    uint64 // events emitted so far; meta[i].seq numbers buf[i] from 1
	newest map[netip.Addr]int32

	dropped atomic.Uint64
}

// slotMeta links one stored event to its source's previous suspicious
// event. A link is valid only while the slot it points to holds an older
// event than the one linking (a slot overwritten since holds a newer one).
type slotMeta struct {
	seq  uint64 // 0: the slot is empty
	prev int32  // slot of the source's previous suspicious event; -1: none
}

type subscriber struct {
	ch     chan Event
	filter Filter
}

// NewRing returns a ring keeping the last n events (at least 1).
func NewRing(n int) *Ring {
	n = max(n, 1)
	return &Ring{buf: make([]Event, n), meta: make([]slotMeta, n), subs: make(map[*subscriber]struct{}),
		newest: make(map[netip.Addr]int32)}
}

// store writes e into the next slot and keeps the per-source chains.
func (r *Ring) store(e *Event) {
	i := r.next
	if old, m := &r.buf[i], r.meta[i]; m.seq != 0 && old.Kind.Suspicious() {
		if j, ok := r.newest[old.Source]; ok && int(j) == i {
			delete(r.newest, old.Source) // its whole chain leaves the ring
		}
	}
	r.seq++
	m := slotMeta{seq: r.seq, prev: -1}
	if e.Kind.Suspicious() {
		if j, ok := r.newest[e.Source]; ok {
			m.prev = j
		}
		r.newest[e.Source] = int32(i)
	}
	r.buf[i], r.meta[i] = *e, m
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// Emit stores e and offers it to every follower whose filter matches.
func (r *Ring) Emit(e Event) {
	r.mu.Lock()
	r.store(&e)
	for s := range r.subs {
		if !s.filter.match(&e) {
			continue
		}
		select {
		case s.ch <- e:
		default:
			r.dropped.Add(1)
		}
	}
	r.mu.Unlock()
}

// Recent returns up to limit of the newest events matching f, oldest first.
// limit <= 0 means all that match.
func (r *Ring) Recent(f Filter, limit int) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if limit <= 0 || limit > n {
		limit = n
	}
	out := make([]Event, 0, min(limit, 256))
	// Walk newest to oldest, then reverse. Events are stored in the order
	// they were emitted, which is their time order give or take the moment
	// between stamping and emitting: with Since, the walk ends at the first
	// event older than Since by more than sinceSlack (the fraud engine asks
	// for one source's last minute when it bans, and must not scan the
	// whole ring for it).
	stop := time.Time{}
	if !f.Since.IsZero() {
		stop = f.Since.Add(-sinceSlack)
	}
	// take looks at one event, newest first, and says whether to go on.
	take := func(e *Event) bool {
		if !stop.IsZero() && e.Time.Before(stop) && !e.Time.IsZero() {
			return false
		}
		if f.match(e) {
			out = append(out, *e)
		}
		return len(out) < limit
	}
	if f.Suspicious && f.Source.IsValid() && f.Source.IsSingleIP() {
		// One source's suspicious events: follow its chain.
		j, ok := r.newest[f.Source.Addr()]
		for ok && take(&r.buf[j]) {
			m := r.meta[j]
			ok = m.prev >= 0 && r.meta[m.prev].seq < m.seq
			j = m.prev
		}
	} else {
		for i := 0; i < n; i++ {
			j := r.next - 1 - i
			if j < 0 {
				j += len(r.buf)
			}
			if !take(&r.buf[j]) {
				break
			}
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Evidence returns up to max of src's newest suspicious events at or after
// since, oldest first: what the fraud engine quotes when it bans src
// (fraud.Options.Recent). It follows src's chain, not the whole ring.
func (r *Ring) Evidence(src netip.Addr, since time.Time, max int) []Event {
	return r.Recent(Filter{Source: netip.PrefixFrom(src, src.BitLen()), Suspicious: true, Since: since}, max)
}

// Follow returns a channel receiving every new event matching f, buffered
// for buf events, and a function that stops the delivery and closes the
// channel. Close of the ring closes every follower's channel too.
func (r *Ring) Follow(f Filter, buf int) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, max(buf, 1)), filter: f}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			r.mu.Lock()
			if _, ok := r.subs[s]; ok {
				delete(r.subs, s)
				close(s.ch)
			}
			r.mu.Unlock()
		})
	}
}

// Close ends every follower. Emit and Recent keep working. Idempotent.
func (r *Ring) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for s := range r.subs {
		delete(r.subs, s)
		close(s.ch)
	}
	return nil
}

// Dropped returns how many events followers lost because they were slow.
func (r *Ring) Dropped() uint64 { return r.dropped.Load() }

// Filter selects events. Zero fields match everything.
type Filter struct {
	Kind     Kind
	Source   netip.Prefix // events whose source is inside
	Listener string
	Service  string
	Proto    string
	Reason   string
	User     string
	Since    time.Time // events at or after (Recent stops looking a second before it)
	// Suspicious selects only events whose kind counts against the source.
	Suspicious bool
}

// sinceSlack is how far out of time order Recent expects neighbouring
// events to be.
const sinceSlack = time.Second

// Match reports whether e passes the filter.
func (f Filter) Match(e Event) bool { return f.match(&e) }

func (f *Filter) match(e *Event) bool {
	switch {
	case f.Kind != 0 && e.Kind != f.Kind,
		f.Suspicious && !e.Kind.Suspicious(),
		f.Source.IsValid() && !f.Source.Contains(e.Source),
		f.Listener != "" && e.Listener != f.Listener,
		f.Service != "" && e.Service != f.Service,
		f.Proto != "" && e.Proto != f.Proto,
		f.Reason != "" && e.Reason != f.Reason,
		f.User != "" && e.User != f.User,
		!f.Since.IsZero() && e.Time.Before(f.Since):
		return false
	}
	return true
}
