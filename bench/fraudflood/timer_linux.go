package main

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// timer sleeps with microsecond precision: a non-blocking timerfd that the
// netpoller waits on. time.Sleep wakes up to a millisecond late when the
// process is otherwise idle (the netpoller's epoll timeout is in whole
// milliseconds), which would be charged to every request's latency here and
// inflate the quiet baseline the flood is compared against.
type timer struct {
	fd    int // never f.Fd(): that would make the descriptor blocking
	f     *os.File
	rc    syscall.RawConn
	fired func(uintptr) bool // bound once
	err   error
}

func newTimer() (*timer, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd") // non-blocking: registered with the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &timer{fd: fd, f: f, rc: rc}
	t.fired = t.read
	return t, nil
}

// read consumes the expiration count; false means not yet fired.
func (t *timer) read(fd uintptr) bool {
	var buf [8]byte
	for {
		_, err := unix.Read(int(fd), buf[:])
		switch err {
		case nil:
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			t.err = fmt.Errorf("read timerfd: %w", err)
			return true
		}
	}
}

// sleep returns after d.
func (t *timer) sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	spec := unix.ItimerSpec{Value: unix.NsecToTimespec(int64(d))}
	if err := unix.TimerfdSettime(t.fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("timerfd_settime: %w", err)
	}
	t.err = nil
	if err := t.rc.Read(t.fired); err != nil {
		return fmt.Errorf("wait on timerfd: %w", err)
	}
	return t.err
}

func (t *timer) close() { t.f.Close() }
