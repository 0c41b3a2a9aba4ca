package httpproxy

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/pbxgate/pbxgate/internal/rawio"
)

// sockIO reads and writes a plaintext TCP socket of the lean path with
// raw system calls, waiting for readiness in the netpoller through
// syscall.RawConn (which keeps deadlines and Close working).
//
// Why: net.Conn's Read and Write enter the scheduler's syscall state. With
// GOMAXPROCS=1 that wakes the sysmon thread from its deep sleep whenever
// the P had gone idle, and sysmon then hands the P to another thread
// whenever a call spans two of its 20 µs ticks (a loopback write runs the
// receiver's TCP stack inline and often does). On a single CPU those
// extra threads preempt the one doing the work: about a third of the
// proxy's CPU went to sysmon and P hand-offs at a quarter of peak load,
// and the latency tail grew with it. Socket calls on a non-blocking
// socket do not block, so the bookkeeping buys nothing here.
type sockIO struct {
	c      net.Conn // for addresses in errors
	rc     syscall.RawConn
	p      []byte
	n      int
	errno  syscall.Errno
	rf, wf func(uintptr) bool // readFn and writeFn, bound once
}

// bind sets up raw I/O on rc. With a nil rc, or on platforms without
// raw socket calls (rawio.Supported false), the sockIO stays unbound and
// the connection's own Read and Write are used.
func (s *sockIO) bind(c net.Conn, rc syscall.RawConn) {
	if !rawio.Supported || rc == nil {
		return
	}
	s.c, s.rc = c, rc
	s.rf, s.wf = s.readFn, s.writeFn
}

func (s *sockIO) readFn(fd uintptr) bool {
	n, e := rawio.Read(fd, s.p)
	if e == syscall.EAGAIN {
		return false
	}
	s.n, s.errno = n, e
	return true
}

func (s *sockIO) writeFn(fd uintptr) bool {
	for s.n < len(s.p) {
		n, e := rawio.Write(fd, s.p[s.n:])
		if e == syscall.EAGAIN {
			return false
		}
		if e != 0 {
			s.errno = e
			return true
		}
		s.n += n
	}
	return true
}

// read is net.Conn's Read on the socket: io.EOF at the end, a timeout
// error at the read deadline.
func (s *sockIO) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = p, 0, 0
	err := s.rc.Read(s.rf)
	n, e := s.n, s.errno
	s.p = nil
	switch {
	case err != nil:
		return 0, err
	case e != 0:
		return 0, s.opError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write is net.Conn's Write on the socket: all of p, or an error.
func (s *sockIO) write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = p, 0, 0
	err := s.rc.Write(s.wf)
	n, e := s.n, s.errno
	s.p = nil
	if err == nil && e != 0 {
		err = s.opError("write", e)
	}
	return n, err
}

// opError wraps a system call error as net.Conn would.
func (s *sockIO) opError(op string, e syscall.Errno) error {
	oe := &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, e)}
	if s.c != nil {
		oe.Source, oe.Addr = s.c.LocalAddr(), s.c.RemoteAddr()
	}
	return oe
}
