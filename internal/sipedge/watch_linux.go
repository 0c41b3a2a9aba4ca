package sipedge

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/pbxgate/pbxgate/internal/epoll"
)

// watcher wakes a callback when a watched connection has bytes to read,
// so that an idle backend connection needs no goroutine of its own: one
// epoll set (package epoll) watches them all, and a connection with bytes
// gets a goroutine only for as long as it has them. Registrations are
// one-shot: the callback re-arms its connection when it has read
// everything, so one connection is never served by two goroutines at once.
type watcher struct {
	set *epoll.Set

	mu    sync.Mutex // guards conns, next
	conns map[uint64]*watched
	next  uint64
}

// watched is one registered connection.
type watched struct {
	id uint64
	rc syscall.RawConn
	fn func(*watched)

	mu      sync.Mutex // guards removed against run starting fn
	removed bool
	running sync.WaitGroup
}

const watchEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newWatcher() (*watcher, error) {
	set, err := epoll.New("sipedge-epoll")
	if err != nil {
		return nil, fmt.Errorf("sipedge: %w", err)
	}
	w := &watcher{set: set, conns: make(map[uint64]*watched)}
	go w.run()
	return w, nil
}

// add watches the connection behind rc: fn runs on a goroutine of its own
// once it is readable (or closed by the peer), possibly before add
// returns, and must call rearm with the registration it is given to be run
// again.
func (w *watcher) add(rc syscall.RawConn, fn func(*watched)) (*watched, error) {
	w.mu.Lock()
	w.next++
	wd := &watched{id: w.next, rc: rc, fn: fn}
	w.conns[wd.id] = wd
	w.mu.Unlock()
	if err := w.set.Ctl(unix.EPOLL_CTL_ADD, rc, watchEvents, wd.id); err != nil {
		w.mu.Lock()
		delete(w.conns, wd.id)
		w.mu.Unlock()
		return nil, fmt.Errorf("sipedge: %w", err)
	}
	return wd, nil
}

// rearm asks for fn to run again at the next readiness. It is a no-op
// after remove.
func (w *watcher) rearm(wd *watched) error {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.removed {
		return nil
	}
	return w.set.Ctl(unix.EPOLL_CTL_MOD, wd.rc, watchEvents, wd.id)
}

// remove stops watching and waits for a running fn to return; call it
// before closing the connection, and never from fn.
func (w *watcher) remove(wd *watched) {
	wd.mu.Lock()
	wd.removed = true
	wd.mu.Unlock()
	_ = w.set.Ctl(unix.EPOLL_CTL_DEL, wd.rc, 0, wd.id)
	w.mu.Lock()
	delete(w.conns, wd.id)
	w.mu.Unlock()
	wd.running.Wait()
}

// run starts fn of every connection reported readable, until close.
func (w *watcher) run() {
	for {
		evs, err := w.set.Wait()
		if err != nil {
			return // closed
		}
		for _, ev := range evs {
			w.mu.Lock()
			wd := w.conns[epoll.Key(ev)]
			w.mu.Unlock()
			if wd == nil {
				continue // removed since
			}
			wd.mu.Lock()
			if !wd.removed {
				wd.running.Add(1)
				go func() {
					defer wd.running.Done()
					wd.fn(wd)
				}()
			}
			wd.mu.Unlock()
		}
	}
}

func (w *watcher) close() { _ = w.set.Close() }

// tryRead reads once without blocking from the connection behind rc.
// It returns errWouldBlock when nothing is there.
func tryRead(rc syscall.RawConn, b []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Read(int(fd), b)
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case errors.Is(rerr, unix.EAGAIN):
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0 && len(b) > 0:
		return 0, errEOF
	}
	return n, nil
}
