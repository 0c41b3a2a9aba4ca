//go:build linux

// Package epoll is an epoll instance for watching many sockets with one
// goroutine: the epoll descriptor is itself registered with Go's poller,
// so Wait parks the goroutine like any network read instead of blocking a
// thread. Sockets stay Go connections (net.Conn, *net.UDPConn); they are
// added through their syscall.RawConn and reported by a caller's 64-bit
// key, so a stale event for a socket closed meanwhile is recognised by
// the caller (its key is gone) rather than misread as another socket's.
//
// Linux only; the package does no reading or writing of the sockets.
package epoll

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// Set is one epoll instance. Ctl is safe for concurrent use; Wait belongs
// to one goroutine.
type Set struct {
	file   *os.File
	rc     syscall.RawConn
	closed atomic.Bool

	// Owned by Wait.
	evs    [128]unix.EpollEvent
	n      int
	werr   error
	waitFn func(uintptr) bool
}

// New creates an epoll instance; name labels its descriptor.
func New(name string) (*Set, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll nonblock: %w", err)
	}
	file := os.NewFile(uintptr(epfd), name)
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	s := &Set{file: file, rc: rc}
	s.waitFn = s.wait
	return s, nil
}

// Ctl adds (unix.EPOLL_CTL_ADD), changes (MOD) or removes (DEL) the socket
// behind conn with the events mask and the key reported for it.
func (s *Set) Ctl(op int, conn syscall.RawConn, events uint32, key uint64) error {
	var cerr error
	err := s.rc.Control(func(epfd uintptr) {
		cerr = conn.Control(func(fd uintptr) {
			// The key fills the 64-bit data field (Fd and Pad).
			ev := unix.EpollEvent{Events: events, Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))}
			if err := unix.EpollCtl(int(epfd), op, int(fd), &ev); err != nil {
				cerr = fmt.Errorf("epoll_ctl: %w", err)
			}
		})
	})
	if err != nil {
		return err
	}
	return cerr
}

// Wait parks until sockets are ready and returns their keys' events; the
// slice is valid until the next Wait. It returns an error once Close has
// been called (os.ErrClosed once Close has run).
func (s *Set) Wait() ([]unix.EpollEvent, error) {
	if err := s.rc.Read(s.waitFn); err != nil {
		if s.closed.Load() {
			return nil, fmt.Errorf("epoll: %w", os.ErrClosed)
		}
		return nil, err
	}
	if s.werr != nil {
		return nil, fmt.Errorf("epoll_wait: %w", s.werr)
	}
	return s.evs[:s.n], nil
}

// Key returns the key an event reports.
func Key(ev unix.EpollEvent) uint64 { return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32 }

// wait collects ready sockets without blocking; false parks the goroutine
// until the epoll descriptor is readable.
func (s *Set) wait(epfd uintptr) bool {
	n, err := unix.EpollWait(int(epfd), s.evs[:], 0)
	s.n = max(n, 0)
	switch {
	case err == nil:
		return n > 0
	case errors.Is(err, unix.EINTR):
		return true
	default:
		s.werr = err
		return true
	}
}

// Close closes the instance; a Wait in progress returns an error.
func (s *Set) Close() error {
	s.closed.Store(true)
	return s.file.Close()
}
