package main

import "time"

// window is a closed loop's bookkeeping on one socket: the requests (or
// packets) sent and not yet answered, by sequence number. A request still
// unanswered after the stall time is lost, whatever happened to the others:
// counting only "no answer at all for a while" let single losses shrink the
// window for good while the rest kept answering.
type window struct {
	size      int // the target number outstanding
	stall     time.Duration
	ring      []wslot // indexed by seq % len(ring)
	low, next uint64  // [low, next) was sent; low is the oldest unresolved
	pending   int     // sent, neither answered nor lost
}

type wslot struct {
	sent time.Time
	done bool
}

// ringSize bounds how far the newest request may run ahead of the oldest
// unresolved one; beyond it the oldest counts as lost.
const ringSize = 4096

func newWindow(size int, stall time.Duration) *window {
	return &window{size: size, stall: stall, ring: make([]wslot, ringSize)}
}

// room is how many requests may be sent now.
func (w *window) room() int { return max(w.size-w.pending, 0) }

// sent records the next request, sent at now, and returns its sequence
// number; lost is 1 when the ring was full and its oldest request had to be
// given up.
func (w *window) sent(now time.Time) (seq uint64, lost int) {
	if w.next-w.low >= uint64(len(w.ring)) {
		lost = w.drop()
	}
	seq = w.next
	w.next++
	w.ring[seq%uint64(len(w.ring))] = wslot{sent: now}
	w.pending++
	return seq, lost
}

// answered records the answer to seq; false for an unknown, repeated or
// late (already lost) one.
func (w *window) answered(seq uint64) bool {
	if seq < w.low || seq >= w.next {
		return false
	}
	s := &w.ring[seq%uint64(len(w.ring))]
	if s.done {
		return false
	}
	s.done = true
	w.pending--
	w.advance()
	return true
}

// expire gives up the requests older than the stall time and returns how
// many.
func (w *window) expire(now time.Time) (lost int) {
	for w.low < w.next {
		s := &w.ring[w.low%uint64(len(w.ring))]
		if !s.done && now.Sub(s.sent) < w.stall {
			break
		}
		if !s.done {
			s.done = true
			w.pending--
			lost++
		}
		w.low++
	}
	return lost
}

// drop gives up the oldest unresolved request.
func (w *window) drop() int {
	s := &w.ring[w.low%uint64(len(w.ring))]
	lost := 0
	if !s.done {
		s.done = true
		w.pending--
		lost = 1
	}
	w.low++
	w.advance()
	return lost
}

func (w *window) advance() {
	for w.low < w.next && w.ring[w.low%uint64(len(w.ring))].done {
		w.low++
	}
}
