//go:build linux

package listen

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// guardedAcceptor accepts from a TCP listener and closes the connections
// of refused sources as cheaply as it can. While nothing is refused it uses
// the listener's own Accept (one accept4 and the poller registration Go
// does anyway). Once a source is refused, it switches to accept4 on a
// duplicate of the listener's descriptor, waiting for connections through
// the poller, and closes refused connections right there, before Go makes
// a net.Conn of them: a banned source that keeps connecting then costs two
// system calls (accept4, close) instead of the half dozen, the allocations
// and the poller registration of net.Conn. An allowed connection accepted
// that way becomes a net.Conn through net.FileConn, which costs a few
// system calls more than Accept. It goes back to Accept once rawFor has
// passed without a refusal.
//
// It is the listener Serve uses: Close closes the duplicate too, which
// wakes an accept waiting on it.
type guardedAcceptor struct {
	*net.TCPListener
	rc  syscall.RawConn // the listener's; only Control works on it
	pit *tarpit         // holds refused connections (Config.RefusedHold)

	lastRefused time.Time // used by the accept loop only

	mu        sync.Mutex // guards the fields below
	dup       *os.File   // the duplicate, made at the first refusal
	drc       syscall.RawConn
	dupFailed bool // no duplicate could be made: Accept only
	closed    bool
}

// rawFor is how long after the last refusal the acceptor keeps accepting
// with accept4.
const rawFor = 2 * time.Second

// refusedPerYield is how many refused connections the accept loop closes
// before it lets other goroutines run.
const refusedPerYield = 64

func newGuardedAcceptor(ln net.Listener, pit *tarpit) (*guardedAcceptor, bool) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, false
	}
	return &guardedAcceptor{TCPListener: tl, rc: rc, pit: pit}, true
}

// Close closes the listener and the duplicate. Idempotent.
func (g *guardedAcceptor) Close() error {
	err := g.TCPListener.Close()
	g.mu.Lock()
	g.closed = true
	if g.dup != nil {
		_ = g.dup.Close()
	}
	g.mu.Unlock()
	return err
}

// accept returns the next connection whose source allowed accepts; refused
// ones are held for hold (see tarpit) or closed. It is called from one
// goroutine only (the accept loop).
func (g *guardedAcceptor) accept(allowed func(netip.Addr) bool, hold time.Duration) (net.Conn, error) {
	for {
		if !g.lastRefused.IsZero() && time.Since(g.lastRefused) < rawFor {
			if drc := g.rawConn(); drc != nil {
				c, err := g.acceptRaw(drc, allowed, hold)
				if c != nil || err != nil {
					return c, err
				}
				continue // rawFor passed without a refusal
			}
		}
		c, err := g.TCPListener.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(addrOf(c.RemoteAddr())) {
			return c, nil
		}
		if !g.pit.holdConn(c, hold) {
			_ = c.Close()
		}
		g.lastRefused = time.Now()
	}
}

// rawConn returns the duplicate's RawConn, making the duplicate first if
// there is none; nil if none can be made (or the listener is closed: the
// caller's Accept then says so).
func (g *guardedAcceptor) rawConn() syscall.RawConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed || g.dupFailed || g.drc != nil {
		return g.drc
	}
	fd := -1
	err := g.rc.Control(func(lfd uintptr) {
		var err error
		if fd, err = unix.FcntlInt(lfd, unix.F_DUPFD_CLOEXEC, 0); err != nil {
			fd = -1
		}
	})
	if err != nil || fd < 0 {
		g.dupFailed = true
		return nil
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		g.dupFailed = true
		return nil
	}
	f := os.NewFile(uintptr(fd), "listener") // non-blocking: registered with the poller
	drc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		g.dupFailed = true
		return nil
	}
	g.dup, g.drc = f, drc
	return drc
}

// acceptRaw accepts with accept4 on the duplicate, closing refused
// connections, until it finds an allowed source. It returns a nil Conn and
// a nil error when rawFor has passed since the last refusal and nothing is
// queued.
func (g *guardedAcceptor) acceptRaw(drc syscall.RawConn, allowed func(netip.Addr) bool, hold time.Duration) (net.Conn, error) {
	var (
		nfd  = -1
		aerr error
		back bool // back to Accept
	)
	refused := 0
	err := drc.Read(func(fd uintptr) bool {
		for {
			n, sa, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch err {
			case nil:
			case unix.EAGAIN:
				// Nothing queued: wait, unless it is time to go back.
				back = time.Since(g.lastRefused) >= rawFor
				return back
			case unix.EINTR, unix.ECONNABORTED:
				continue
			default:
				aerr = err
				return true
			}
			if allowed(sockaddrAddr(sa)) {
				nfd = n
				return true
			}
			if !g.pit.holdFD(n, hold) {
				_ = unix.Close(n)
			}
			g.lastRefused = time.Now()
			if refused++; refused%refusedPerYield == 0 {
				runtime.Gosched()
			}
		}
	})
	switch {
	case err != nil:
		if errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: g.Addr(), Err: err}
	case aerr != nil:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: g.Addr(), Err: os.NewSyscallError("accept4", aerr)}
	case back:
		return nil, nil
	}
	f := os.NewFile(uintptr(nfd), "")
	c, err := net.FileConn(f)
	_ = f.Close()
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: g.Addr(), Err: err}
	}
	return c, nil
}

// sockaddrAddr returns the unmapped address of an accepted peer.
func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// closeReset closes a socket descriptor with a reset (SO_LINGER 0).
func closeReset(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	_ = unix.Close(fd)
}
