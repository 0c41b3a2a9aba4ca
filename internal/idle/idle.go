// Package idle lets low-priority work wait until the process has a CPU to
// spare.
//
// Go's scheduler has no priorities: a goroutine made runnable joins the
// run queue behind all the others, and goroutines woken by the network are
// only found when a scheduler thread runs out of work (or by a background
// check every 10 ms). A burst of work from strangers therefore delays the
// answers to everybody else, however little each piece costs.
//
// A Gate turns that rule to its advantage. Wait queues the caller and
// marks a pipe readable; the Gate's own goroutine waits for that pipe
// through the network poller, so it is only woken when the scheduler looks
// at the network, which is when it has nothing else to run (or at the
// periodic check). Each time, it lets one waiter go and marks the pipe
// again if more are waiting. Work done after Wait thus runs in the gaps
// the rest leaves: at once when the process is idle, one piece per gap
// when it is busy, and never ahead of work that was already queued.
//
// On systems whose pipes are not polled (Windows), waiters are let go one
// at a time as fast as the Gate's goroutine runs.
package idle

import (
	"context"
	"errors"
	"os"
	"slices"
	"sync"
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("idle: gate closed")

// Gate queues waiters and lets them go one per idle moment. Its methods
// are safe for concurrent use.
type Gate struct {
	r, w *os.File
	done chan struct{} // closed by Close

	mu      sync.Mutex // guards the fields below
	queue   []*waiter  // FIFO; cancelled waiters stay until reached
	armed   bool       // a byte is in the pipe or the goroutine is about to look
	closed  bool
	running bool

	once sync.Once
}

type waiter struct {
	ch    chan struct{} // closed when let go
	gone  bool          // the waiter gave up (guarded by Gate.mu)
	rearm bool          // others wait: mark the pipe once let go (set before ch is closed)
}

// New returns a Gate. Run must run for waiters to be let go.
func New() (*Gate, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &Gate{r: r, w: w, done: make(chan struct{})}, nil
}

// Wait returns true once the Gate lets the caller go, false if ctx ends
// first or the Gate is closed.
func (g *Gate) Wait(ctx context.Context) bool {
	w := &waiter{ch: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.queue = append(g.queue, w)
	arm := !g.armed
	g.armed = true
	g.mu.Unlock()
	if arm {
		g.arm()
	}
	select {
	case <-w.ch:
		return g.wentOn(w)
	case <-g.done:
		return false
	case <-ctx.Done():
		g.mu.Lock()
		select {
		case <-w.ch: // let go meanwhile: take it
			g.mu.Unlock()
			return g.wentOn(w)
		default:
		}
		w.gone = true
		g.mu.Unlock()
		return false
	}
}

// wentOn is the first thing a waiter does once let go: if others wait, it
// marks the pipe for the next. The Gate's goroutine is parked on the empty
// pipe by then (with one scheduler thread it is sure to be: it parks before
// the waiter runs), so it wakes only at the scheduler's next look at the
// network. Marking the pipe before parking would make its read return at
// once and let the next waiter go without waiting for an idle moment.
func (g *Gate) wentOn(w *waiter) bool {
	if w.rearm {
		g.arm()
	}
	return true
}

// Waiting returns how many callers wait now (cancelled ones not yet
// reached included).
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}

// arm makes the pipe readable.
func (g *Gate) arm() {
	_, _ = g.w.Write([]byte{0})
}

// Run lets waiters go, one per idle moment, until ctx ends or Close is
// called; it then lets every waiter go with false and returns ctx.Err()
// or ErrClosed. It must run once.
func (g *Gate) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.running || g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.running = true
	g.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = g.Close() })
	defer stop()
	buf := make([]byte, 64)
	for {
		if _, err := g.r.Read(buf); err != nil {
			_ = g.Close()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return ErrClosed
		}
		g.letOneGo()
	}
}

// letOneGo lets the first live waiter go; if others wait, that waiter
// marks the pipe again (wentOn).
func (g *Gate) letOneGo() {
	g.mu.Lock()
	defer g.mu.Unlock()
	var w *waiter
	for len(g.queue) > 0 && w == nil {
		if !g.queue[0].gone {
			w = g.queue[0]
		}
		g.queue[0] = nil
		g.queue = g.queue[1:]
	}
	more := slices.ContainsFunc(g.queue, func(x *waiter) bool { return !x.gone })
	if w == nil {
		g.armed = false
		return
	}
	// armed stays true while the released waiter is to mark the pipe.
	w.rearm = more
	g.armed = more
	close(w.ch)
}

// Close stops Run and makes Wait return false, for the callers waiting
// now and later. Idempotent.
func (g *Gate) Close() error {
	g.once.Do(func() {
		g.mu.Lock()
		g.closed = true
		g.queue = nil
		g.mu.Unlock()
		close(g.done)
		_ = g.w.Close()
		_ = g.r.Close()
	})
	return nil
}
