package listen

import (
	"net"
	"sync"
	"time"
)

// maxHeld bounds the refused connections a listener holds at a time; more
// are closed at once.
const maxHeld = 4096

// tarpit holds refused connections open, unanswered, for a while before it
// closes them (Config.RefusedHold). A banned client whose connection is
// closed at once tries again at once, thousands of times a second, and
// every try costs a handshake and an accept; one that is held waits for
// its own timeout, as it does when the kernel drops its SYNs. The
// connections are not read and have no goroutine; each costs a socket.
type tarpit struct {
	mu     sync.Mutex
	q      []heldConn // in the order they expire (one hold per call site, FIFO)
	timer  *time.Timer
	closed bool
}

// heldConn is a raw descriptor (fd >= 0) or a net.Conn.
type heldConn struct {
	fd    int
	c     net.Conn
	until time.Time
}

// holdFD holds the descriptor of a refused connection for d; it reports
// false (and holds nothing) when d is 0, the tarpit is nil, full or closed: the
// caller closes it then.
func (t *tarpit) holdFD(fd int, d time.Duration) bool {
	return t.hold(heldConn{fd: fd}, d)
}

// holdConn is holdFD for a net.Conn.
func (t *tarpit) holdConn(c net.Conn, d time.Duration) bool {
	return t.hold(heldConn{fd: -1, c: c}, d)
}

func (t *tarpit) hold(h heldConn, d time.Duration) bool {
	if t == nil || d <= 0 {
		return false
	}
	now := time.Now()
	h.until = now.Add(d)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.expireLocked(now)
	if len(t.q) >= maxHeld || len(t.q) > 0 && h.until.Before(t.q[len(t.q)-1].until) {
		// Full, or a shorter hold after a reload: not in expiry order.
		return false
	}
	t.q = append(t.q, h)
	if len(t.q) == 1 {
		t.scheduleLocked(now)
	}
	return true
}

// expireLocked closes the connections whose hold is over.
func (t *tarpit) expireLocked(now time.Time) {
	n := 0
	for n < len(t.q) && !now.Before(t.q[n].until) {
		release(t.q[n])
		n++
	}
	if n > 0 {
		k := copy(t.q, t.q[n:])
		clear(t.q[k:])
		t.q = t.q[:k]
	}
}

// scheduleLocked arms the timer for the first hold to end.
func (t *tarpit) scheduleLocked(now time.Time) {
	if len(t.q) == 0 {
		return
	}
	d := t.q[0].until.Sub(now)
	if t.timer == nil {
		t.timer = time.AfterFunc(d, t.tick)
	} else {
		t.timer.Reset(d)
	}
}

func (t *tarpit) tick() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	now := time.Now()
	t.expireLocked(now)
	t.scheduleLocked(now)
}

// held returns how many connections are held now.
func (t *tarpit) held() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q)
}

// close closes every held connection; later holds are refused. Idempotent.
func (t *tarpit) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.timer != nil {
		t.timer.Stop()
	}
	for _, h := range t.q {
		release(h)
	}
	t.q = nil
}

// release closes a held connection with a reset, so that its socket is
// freed at once rather than lingering in the closing states.
func release(h heldConn) {
	if h.c != nil {
		if tc, ok := h.c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = h.c.Close()
		return
	}
	closeReset(h.fd)
}
