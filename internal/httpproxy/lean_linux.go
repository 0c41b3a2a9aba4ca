package httpproxy

import (
	"net"
	"syscall"
	"unsafe"

	"github.com/pbxgate/pbxgate/internal/rawio"
)

// rawOf returns the socket under a plaintext connection, so that the lean
// path can wait for a request without holding a buffer: a *net.TCPConn, or
// a wrapper exposing one with Raw (the listener's replaying Conn).
func rawOf(c net.Conn) syscall.RawConn {
	var tc *net.TCPConn
	switch x := c.(type) {
	case *net.TCPConn:
		tc = x
	case interface{ Raw() *net.TCPConn }:
		tc = x.Raw()
	}
	if tc == nil {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readReady is the syscall.RawConn.Read callback of an idle plaintext
// connection: once the socket is readable it takes a buffer and reads into
// it; while it is not, no buffer is held.
func (lc *leanConn) readReady(fd uintptr) bool {
	if lc.bufp == nil {
		lc.takeBuf(smallBuf)
	}
	n, e := rawio.Read(fd, lc.buf)
	switch {
	case e == syscall.EAGAIN:
		lc.releaseBuf()
		return false
	case e != 0:
		lc.readErr = lc.io.opError("read", e)
	case n == 0:
		lc.readErr = errEOF
	default:
		lc.r, lc.w = 0, n
	}
	return true
}

// alive reports whether an idle backend connection is still usable: not
// closed by the backend and with nothing unsolicited to read.
func (bc *bconn) alive() bool {
	if bc.rc == nil {
		return true
	}
	ok := true
	err := bc.rc.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			// A raw call, as in sockIO: it cannot block.
			_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			ok = e == syscall.EAGAIN
			return true
		}
	})
	return ok && err == nil
}
