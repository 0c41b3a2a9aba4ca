package rawsock

import (
	"syscall"
	"unsafe"
)

const supported = true

// sysRead reads a non-blocking socket without telling the scheduler: the
// call cannot block.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// sysWrite is sysRead's counterpart; MSG_NOSIGNAL: a closed peer is
// EPIPE, not a signal.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
			syscall.MSG_NOSIGNAL, 0, 0)
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}
