// Package rawio reads and writes non-blocking sockets with raw system
// calls, bypassing the Go scheduler's syscall bookkeeping. Such calls
// cannot block, and skipping the bookkeeping keeps the runtime's sysmon
// thread asleep and the P on the calling thread, which matters with
// GOMAXPROCS=1 (see internal/httpproxy/sockio.go). Waiting for readiness
// is the caller's job (syscall.RawConn); this package only issues calls.
package rawio

import (
	"syscall"
	"unsafe"
)

// Supported reports whether Read and Write work on this platform.
const Supported = true

// Read reads a non-blocking socket; EINTR is retried.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// Write writes a non-blocking socket with MSG_NOSIGNAL (a closed peer is
// EPIPE, not a signal); EINTR is retried.
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
			syscall.MSG_NOSIGNAL, 0, 0)
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}
