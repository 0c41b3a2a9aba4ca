package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// timer is a non-blocking CLOCK_MONOTONIC timerfd registered with the
// netpoller.
type timer struct {
	fd    uintptr // for timerfd_settime; never f.Fd(), which makes f blocking
	f     *os.File
	rc    syscall.RawConn
	wait  func(uintptr) bool // bound once: no allocation per sleep
	errno syscall.Errno
}

func newTimer() (*timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	// A non-blocking descriptor: os.NewFile registers it with the netpoller.
	f := os.NewFile(uintptr(fd), "timerfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &timer{fd: uintptr(fd), f: f, rc: rc}
	t.wait = t.expired
	return t, nil
}

// expired is the RawConn.Read callback: it consumes the expiration count,
// or reports that the timer has not fired yet. A raw system call: reading a
// non-blocking timerfd cannot block.
func (t *timer) expired(fd uintptr) bool {
	var n uint64
	for {
		_, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&n)), 8)
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		t.errno = e
		return true
	}
}

// sleep waits at least d (d > 0).
func (t *timer) sleep(d time.Duration) error {
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(max(d, 1)))}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, t.fd, 0,
		uintptr(unsafe.Pointer(&spec)), 0, 0, 0); e != 0 {
		return fmt.Errorf("timerfd_settime: %w", e)
	}
	t.errno = 0
	if err := t.rc.Read(t.wait); err != nil {
		return fmt.Errorf("timerfd wait: %w", err)
	}
	if t.errno != 0 {
		return fmt.Errorf("timerfd read: %w", t.errno)
	}
	return nil
}

func (t *timer) close() { t.f.Close() }
