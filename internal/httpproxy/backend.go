package httpproxy

import (
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// backendPool keeps idle keep-alive connections to one plain-HTTP backend
// for the lean path: at most max, each closed after idleTimeout unused.
// Connections are reused newest first; a timer closes expired ones.
type backendPool struct {
	addr        string
	dialer      net.Dialer
	idleTimeout time.Duration
	max         int

	mu     sync.Mutex // guards the fields below
	idle   []*bconn   // oldest first
	armed  bool       // timer scheduled
	timer  *time.Timer
	closed bool
}

// bconn is one backend connection.
type bconn struct {
	c      net.Conn
	rc     syscall.RawConn // for the liveness check; nil if unavailable
	io     sockIO          // raw reads and writes, when rc is set
	idleAt time.Time       // when it was put back
	rdl    time.Time       // read deadline currently set
	reused bool            // it served a request before
}

// livenessAge is how long a connection may have been idle before it is
// checked for a close by the backend before reuse.
const livenessAge = time.Second

func newBackendPool(addr string, o Options) *backendPool {
	return &backendPool{
		addr:        addr,
		dialer:      net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second},
		idleTimeout: o.IdleConnTimeout,
		max:         o.MaxIdleConnsPerHost,
	}
}

// get returns an idle connection, or dials a new one. check asks for the
// liveness check whatever the idle time (requests that cannot be retried).
func (p *backendPool) get(ctx context.Context, now time.Time, check bool) (*bconn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if now.Sub(bc.idleAt) >= p.idleTimeout {
			// The newest is expired: so are all the others.
			rest := p.idle
			p.idle = p.idle[:0]
			p.mu.Unlock()
			_ = bc.c.Close()
			for i, o := range rest {
				_ = o.c.Close()
				rest[i] = nil
			}
			break
		}
		p.mu.Unlock()
		if (check || now.Sub(bc.idleAt) >= livenessAge) && !bc.alive() {
			_ = bc.c.Close()
			continue
		}
		return bc, nil
	}
	return p.dial(ctx)
}

// dial connects a new connection.
func (p *backendPool) dial(ctx context.Context) (*bconn, error) {
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	bc := &bconn{c: c}
	if sc, ok := c.(syscall.Conn); ok {
		bc.rc, _ = sc.SyscallConn()
	}
	bc.io.bind(c, bc.rc)
	return bc, nil
}

// read reads the backend connection (raw system calls where it can).
func (bc *bconn) read(p []byte) (int, error) {
	if bc.io.rc != nil {
		return bc.io.read(p)
	}
	return bc.c.Read(p)
}

// write writes to the backend connection.
func (bc *bconn) write(p []byte) (int, error) {
	if bc.io.rc != nil {
		return bc.io.write(p)
	}
	return bc.c.Write(p)
}

// put returns a connection after a complete exchange.
func (p *backendPool) put(bc *bconn, now time.Time) {
	bc.idleAt = now
	bc.reused = true
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		_ = bc.c.Close()
		return
	}
	p.idle = append(p.idle, bc)
	if !p.armed {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.idleTimeout, p.sweep)
		} else {
			p.timer.Reset(p.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// sweep closes the expired idle connections and re-arms the timer for the
// next expiry.
func (p *backendPool) sweep() {
	now := time.Now()
	var expired []*bconn
	p.mu.Lock()
	k := 0
	for k < len(p.idle) && now.Sub(p.idle[k].idleAt) >= p.idleTimeout {
		k++
	}
	if k > 0 {
		expired = append(expired, p.idle[:k]...)
		n := copy(p.idle, p.idle[k:])
		clear(p.idle[n:])
		p.idle = p.idle[:n]
	}
	p.armed = false
	if len(p.idle) > 0 && !p.closed {
		p.armed = true
		p.timer.Reset(p.idle[0].idleAt.Add(p.idleTimeout).Sub(now))
	}
	p.mu.Unlock()
	for _, bc := range expired {
		_ = bc.c.Close()
	}
}

// close closes the idle connections; connections put back later are
// closed at once.
func (p *backendPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	for _, bc := range idle {
		_ = bc.c.Close()
	}
}

// setReadDeadline sets the read deadline unless the one in place is
// already within slack before t.
func (bc *bconn) setReadDeadline(t time.Time, slack time.Duration) {
	if t.IsZero() {
		if bc.rdl.IsZero() {
			return
		}
	} else if !bc.rdl.IsZero() && !bc.rdl.After(t) && t.Sub(bc.rdl) <= slack {
		return
	}
	bc.rdl = t
	_ = bc.c.SetReadDeadline(t)
}
