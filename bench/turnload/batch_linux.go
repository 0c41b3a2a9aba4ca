//go:build linux

package main

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batch is a set of datagram buffers read or written together on one UDP
// socket with recvmmsg/sendmmsg: one system call for up to len(bufs)
// datagrams. The calls are raw (syscall.RawSyscall6 on the non-blocking
// descriptor, waiting for readiness in the netpoller through
// syscall.RawConn), for the reason bench/internal/rawsock gives: with the
// tool pinned to one CPU and GOMAXPROCS=1, the scheduler's syscall
// bookkeeping would otherwise cost more than the I/O.
//
// A batch belongs to one goroutine; a socket may have one reading and one
// writing batch in use at the same time.
type batch struct {
	rc    syscall.RawConn
	bufs  [][]byte // the datagrams; recv fills them, send sends them
	lens  []int    // datagram lengths: set by recv, by the caller for send
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet4 // sources after recv; destinations for send when named
	named bool                    // send to names (the peer's echo) rather than the connected address

	count  int // datagrams of the last call
	errno  syscall.Errno
	lo, hi int                   // the headers send still has to send
	readF  func(fd uintptr) bool // bound once: no allocation per call
	writeF func(fd uintptr) bool
}

// newBatch makes a batch of n buffers of size bytes on c. named: the
// socket is not connected and send answers the sources of the last recv.
func newBatch(c *net.UDPConn, n, size int, named bool) (*batch, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &batch{
		rc:    rc,
		bufs:  make([][]byte, n),
		lens:  make([]int, n),
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet4, n),
		named: named,
	}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
		b.iovs[i].Base = &b.bufs[i][0]
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.Iovlen = 1
	}
	b.readF = b.recvmmsg
	b.writeF = b.sendmmsg
	return b, nil
}

// recv waits for at least one datagram (or the socket's read deadline) and
// reads as many as are queued, up to len(bufs); it returns their number.
// Truncated datagrams keep the buffer's size as length.
func (b *batch) recv() (int, error) {
	for i := range b.hdrs {
		b.iovs[i].SetLen(len(b.bufs[i]))
		b.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		b.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
		b.hdrs[i].Hdr.Flags = 0
	}
	b.count, b.errno = 0, 0
	if err := b.rc.Read(b.readF); err != nil {
		return 0, err
	}
	if b.errno != 0 {
		return 0, fmt.Errorf("recvmmsg: %w", b.errno)
	}
	for i := 0; i < b.count; i++ {
		b.lens[i] = int(b.hdrs[i].Len)
	}
	return b.count, nil
}

func (b *batch) recvmmsg(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), 0, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			b.count = int(n)
		default:
			b.errno = e
		}
		return true
	}
}

// send sends bufs[:n] with lengths lens[:n]: to the connected address, or
// for a named batch back to the sources of the last recv. It returns when
// all n are sent or on an error.
func (b *batch) send(n int) error {
	for i := 0; i < n; i++ {
		b.iovs[i].SetLen(b.lens[i])
		if !b.named {
			b.hdrs[i].Hdr.Name = nil
			b.hdrs[i].Hdr.Namelen = 0
		}
	}
	for b.lo, b.hi = 0, n; b.lo < b.hi; b.lo += b.count {
		b.count, b.errno = 0, 0
		if err := b.rc.Write(b.writeF); err != nil {
			return err
		}
		if b.errno != 0 {
			return fmt.Errorf("sendmmsg: %w", b.errno)
		}
	}
	return nil
}

func (b *batch) sendmmsg(fd uintptr) bool {
	hdrs := b.hdrs[b.lo:b.hi]
	for {
		n, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&hdrs[0])), uintptr(len(hdrs)), syscall.MSG_NOSIGNAL, 0, 0)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			b.count = int(n)
		default:
			b.errno = e
		}
		return true
	}
}

// errClosed reports whether err means the socket was closed or its read
// deadline passed: the normal ends of a reading loop.
func errClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errDeadline)
}
