package udprelay

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// maxReadsPerEvent bounds the datagrams read from one upstream socket per
// readiness report, so one busy flow cannot starve the others; the epoll
// set is level-triggered, so what is left is reported again.
const maxReadsPerEvent = 16

// epollUpstreams watches every upstream socket with one epoll instance.
// The epoll descriptor is itself registered with Go's poller, so the
// reading goroutine parks like any network read instead of blocking a
// thread. Each socket stays a *net.UDPConn: its Close is safe against a
// read in progress, and closing it removes it from the epoll set.
type epollUpstreams struct {
	r    *Relay
	file *os.File // the epoll descriptor
	rc   syscall.RawConn

	// Owned by run.
	evs     [128]unix.EpollEvent
	n       int
	werr    error
	buf     []byte
	scratch []byte // handed to Inspect
	rn      int
	rerr    error
	waitFn  func(uintptr) bool
	readFn  func(uintptr) bool
}

func newUpstreams(r *Relay) (upstreams, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("udprelay: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("udprelay: epoll nonblock: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "udprelay-epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("udprelay: epoll: %w", err)
	}
	u := &epollUpstreams{r: r, file: file, rc: rc, buf: make([]byte, bufSize), scratch: make([]byte, ScratchSize)}
	u.waitFn = u.wait
	u.readFn = u.read
	return u, nil
}

func (u *epollUpstreams) add(f *Flow) error {
	var cerr error
	err := u.rc.Control(func(epfd uintptr) {
		err := f.rc.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(f.id)}
			cerr = unix.EpollCtl(int(epfd), unix.EPOLL_CTL_ADD, int(fd), &ev)
		})
		if cerr == nil {
			cerr = err
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("udprelay: epoll_ctl: %w", err)
	}
	return nil
}

func (u *epollUpstreams) close() { _ = u.file.Close() }

// run reads ready sockets until close.
func (u *epollUpstreams) run() {
	for {
		if err := u.rc.Read(u.waitFn); err != nil {
			return // closed
		}
		if u.werr != nil {
			u.r.log.Error("udp upstream epoll_wait failed", "err", u.werr)
			return
		}
		for i := range u.n {
			u.serve(uint32(u.evs[i].Fd))
		}
	}
}

// wait collects ready sockets without blocking; false parks the goroutine
// until the epoll descriptor is readable.
func (u *epollUpstreams) wait(epfd uintptr) bool {
	n, err := unix.EpollWait(int(epfd), u.evs[:], 0)
	u.n = max(n, 0)
	switch {
	case err == nil:
		return n > 0
	case errors.Is(err, unix.EINTR):
		return true
	default:
		u.werr = err
		return true
	}
}

// read reads one datagram without blocking.
func (u *epollUpstreams) read(fd uintptr) bool {
	u.rn, u.rerr = unix.Read(int(fd), u.buf)
	return true
}

// serve relays what the socket of flow id has to offer.
func (u *epollUpstreams) serve(id uint32) {
	r := u.r
	r.mu.Lock()
	f := r.byID[id]
	r.mu.Unlock()
	if f == nil {
		return // closed since epoll_wait
	}
	for range maxReadsPerEvent {
		if err := f.rc.Read(u.readFn); err != nil {
			return // closed
		}
		switch err := u.rerr; {
		case err == nil:
			r.fromBackend(f, u.buf[:u.rn], u.scratch)
		case errors.Is(err, unix.EAGAIN):
			return
		case errors.Is(err, unix.ECONNREFUSED):
			r.unreachable(f)
		default:
			r.st.errorDrop.Add(1)
			r.log.Debug("udp upstream read failed", "backend", f.Backend, "err", err)
			return
		}
	}
}
