//go:build linux

package listen

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// guardedAcceptor accepts from a TCP listener with accept4 on its file
// descriptor and closes the connections of refused sources right there,
// before Go makes a net.Conn of them: a banned source that keeps
// connecting costs two system calls (accept4, close) instead of the half
// dozen, the allocations and the poller registration of net.Conn. Allowed
// sources are handed on as an ordinary *net.TCPConn.
type guardedAcceptor struct {
	ln *net.TCPListener
	rc syscall.RawConn // only Control works on a listener
}

func newGuardedAcceptor(ln net.Listener) (*guardedAcceptor, bool) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil, false
	}
	return &guardedAcceptor{ln: tl, rc: rc}, true
}

// refusedPerYield is how many refused connections the accept loop closes
// before it lets other goroutines run.
const refusedPerYield = 64

// accept returns the next connection whose source allowed accepts. It
// first drains the listener's queue with accept4 (Go offers no blocking
// raw read on a listener), closing refused connections; when the queue is
// empty it waits in the listener's own Accept, whose connection is then
// checked like any other.
func (g *guardedAcceptor) accept(allowed func(netip.Addr) bool) (net.Conn, error) {
	for {
		var (
			nfd  = -1
			aerr error
		)
		err := g.rc.Control(func(fd uintptr) {
			refused := 0
			for {
				n, sa, err := unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				switch err {
				case nil:
				case unix.EAGAIN:
					return
				case unix.EINTR, unix.ECONNABORTED:
					continue
				default:
					aerr = err
					return
				}
				if allowed(sockaddrAddr(sa)) {
					nfd = n
					return
				}
				_ = unix.Close(n)
				if refused++; refused%refusedPerYield == 0 {
					runtime.Gosched()
				}
			}
		})
		switch {
		case err != nil:
			return nil, err // the listener was closed
		case aerr != nil:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: g.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
		case nfd >= 0:
			f := os.NewFile(uintptr(nfd), "")
			c, err := net.FileConn(f)
			_ = f.Close()
			if err != nil {
				return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: g.ln.Addr(), Err: err}
			}
			return c, nil
		}
		// Nothing queued: wait for the next connection the ordinary way.
		c, err := g.ln.Accept()
		if err != nil {
			return nil, err
		}
		if allowed(addrOf(c.RemoteAddr())) {
			return c, nil
		}
		_ = c.Close()
	}
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
