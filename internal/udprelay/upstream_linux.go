package udprelay

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pbxgate/pbxgate/internal/epoll"
)

// maxReadsPerEvent bounds the datagrams read from one upstream socket per
// readiness report, so one busy flow cannot starve the others; the epoll
// set is level-triggered, so what is left is reported again.
const maxReadsPerEvent = 16

// epollUpstreams watches every upstream socket with one epoll set (see
// package epoll). Each socket stays a *net.UDPConn: its Close is safe
// against a read in progress, and closing it removes it from the set.
type epollUpstreams struct {
	r   *Relay
	set *epoll.Set

	// Owned by run.
	buf     []byte
	scratch []byte // handed to Inspect
	rn      int
	rerr    error
	readFn  func(uintptr) bool
}

func newUpstreams(r *Relay) (upstreams, error) {
	set, err := epoll.New("udprelay-epoll")
	if err != nil {
		return nil, fmt.Errorf("udprelay: %w", err)
	}
	u := &epollUpstreams{r: r, set: set, buf: make([]byte, bufSize), scratch: make([]byte, ScratchSize)}
	u.readFn = u.read
	return u, nil
}

func (u *epollUpstreams) add(f *Flow) error {
	if err := u.set.Ctl(unix.EPOLL_CTL_ADD, f.rc, unix.EPOLLIN, uint64(f.id)); err != nil {
		return fmt.Errorf("udprelay: %w", err)
	}
	return nil
}

func (u *epollUpstreams) close() { _ = u.set.Close() }

// run reads ready sockets until close.
func (u *epollUpstreams) run() {
	for {
		evs, err := u.set.Wait()
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				u.r.log.Error("udp upstreams not watched any more", "err", err)
			}
			return
		}
		for _, ev := range evs {
			u.serve(uint32(epoll.Key(ev)))
		}
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
