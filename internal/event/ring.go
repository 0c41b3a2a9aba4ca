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

	dropped atomic.Uint64
}

type subscriber struct {
	ch     chan Event
	filter Filter
}

// NewRing returns a ring keeping the last n events (at least 1).
func NewRing(n int) *Ring {
	return &Ring{buf: make([]Event, max(n, 1)), subs: make(map[*subscriber]struct{})}
}

// Emit stores e and offers it to every follower whose filter matches.
func (r *Ring) Emit(e Event) {
	r.mu.Lock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
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
	for i := 0; i < n && len(out) < limit; i++ {
		j := r.next - 1 - i
		if j < 0 {
			j += len(r.buf)
		}
		e := &r.buf[j]
		if !stop.IsZero() && e.Time.Before(stop) && !e.Time.IsZero() {
			break
		}
		if f.match(e) {
			out = append(out, *e)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
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
