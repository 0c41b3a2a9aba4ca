// Package rawsock makes the plaintext TCP sockets of the benchmark tools
// (bench/backend, bench/loadgen) read and write with raw non-blocking system
// calls, waiting for readiness in Go's netpoller through syscall.RawConn.
//
// Why: net.Conn's Read and Write enter the scheduler's syscall state. Pinned
// to one CPU with GOMAXPROCS=1, that wakes the sysmon thread and hands the P
// between OS threads that then preempt each other on the one CPU: tens of
// thousands of involuntary context switches per second and most of the
// harness's CPU went to that bookkeeping, not to HTTP. A call on a
// non-blocking socket cannot block, so the bookkeeping buys nothing. The
// same technique serves pbxgate's lean HTTP path (internal/httpproxy,
// sockio.go); this is a small copy for the benchmark tools, which must not
// depend on the proxy's internals.
//
// Deadlines and Close keep working (syscall.RawConn honours them). It does
// not handle anything but *net.TCPConn; other connections, and every
// connection on platforms other than Linux, are returned unchanged.
package rawsock

import (
	"io"
	"net"
	"os"
	"syscall"

	"github.com/pbxgate/pbxgate/internal/rawio"
)

// Wrap returns c with Read and Write done by raw system calls when c is a
// *net.TCPConn on Linux, and c itself otherwise. Reads and writes may run
// concurrently with each other (one goroutine each), as on net.Conn.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !rawio.Supported {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	rw := &conn{TCPConn: tc, rc: rc}
	rw.r.fn = rw.r.readFn
	rw.w.fn = rw.w.writeFn
	return rw
}

// conn is a *net.TCPConn whose Read and Write bypass the scheduler's
// syscall bookkeeping. Everything else is the TCPConn's.
type conn struct {
	*net.TCPConn
	rc   syscall.RawConn
	r, w op // the read side's and the write side's state
}

// op is the state of one direction's call in progress; fn is the bound
// RawConn callback, so a call does not allocate.
type op struct {
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(uintptr) bool
}

func (o *op) readFn(fd uintptr) bool {
	n, e := rawio.Read(fd, o.p)
	if e == syscall.EAGAIN {
		return false
	}
	o.n, o.errno = n, e
	return true
}

func (o *op) writeFn(fd uintptr) bool {
	for o.n < len(o.p) {
		n, e := rawio.Write(fd, o.p[o.n:])
		if e == syscall.EAGAIN {
			return false
		}
		if e != 0 {
			o.errno = e
			return true
		}
		o.n += n
	}
	return true
}

// Read is net.Conn's Read: io.EOF at the end of the stream.
func (c *conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &c.r
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Read(o.fn)
	n, e := o.n, o.errno
	o.p = nil
	switch {
	case err != nil:
		return 0, c.opError("read", err)
	case e != 0:
		return 0, c.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write is net.Conn's Write: all of p, or an error.
func (c *conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	o := &c.w
	o.p, o.n, o.errno = p, 0, 0
	err := c.rc.Write(o.fn)
	n, e := o.n, o.errno
	o.p = nil
	switch {
	case err != nil:
		return n, c.opError("write", err)
	case e != 0:
		return n, c.opError("write", os.NewSyscallError("write", e))
	}
	return n, nil
}

// opError wraps an error as net.Conn would, so that os.ErrDeadlineExceeded
// and net.ErrClosed stay detectable with errors.Is.
func (c *conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
