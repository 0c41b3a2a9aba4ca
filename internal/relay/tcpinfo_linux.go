package relay

import (
	"encoding/binary"
	"net"
	"syscall"
	"unsafe"
)

// Offsets in struct tcp_info (linux/tcp.h); the struct only ever grows, and
// tcpi_bytes_acked / tcpi_bytes_received exist since Linux 4.1.
const (
	tcpiBytesAcked    = 120
	tcpiBytesReceived = 128
	tcpiNeeded        = tcpiBytesReceived + 8
)

// tcpProgress returns tcpi_bytes_acked + tcpi_bytes_received of c: a counter
// that grows whenever the peer acknowledges data we sent or we receive data,
// without reading the socket. ok is false when the kernel cannot tell.
func tcpProgress(c *net.TCPConn) (progress uint64, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info [tcpiNeeded]byte
	size := uint32(len(info))
	var errno syscall.Errno
	cerr := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd,
			syscall.IPPROTO_TCP, syscall.TCP_INFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	})
	if cerr != nil || errno != 0 || size < tcpiNeeded {
		return 0, false
	}
	acked := binary.NativeEndian.Uint64(info[tcpiBytesAcked:])
	received := binary.NativeEndian.Uint64(info[tcpiBytesReceived:])
	return acked + received, true
}
