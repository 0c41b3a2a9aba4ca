package sipedge

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// watcher wakes a callback when a watched connection has bytes to read,
// so that an idle backend connection needs no goroutine of its own: one
// epoll instance watches them all, and a connection with bytes gets a
// goroutine only for as long as it has them. The epoll descriptor is
// itself registered with Go's poller, so the watching goroutine parks like
// any network read. Registrations are one-shot: the callback re-arms its
// connection when it has read everything, so one connection is never
// served by two goroutines at once.
type watcher struct {
	file *os.File // the epoll descriptor
	rc   syscall.RawConn

	mu    sync.Mutex // guards conns, next
	conns map[uint64]*watched
	next  uint64

	// Owned by run.
	evs    [128]unix.EpollEvent
	n      int
	werr   error
	waitFn func(uintptr) bool
}

// watched is one registered connection.
type watched struct {
	id uint64
	rc syscall.RawConn
	fn func()

	mu      sync.Mutex // guards removed against run starting fn
	removed bool
	running sync.WaitGroup
}

const watchEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newWatcher() (*watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("sipedge: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("sipedge: epoll nonblock: %w", err)
	}
	file := os.NewFile(uintptr(epfd), "sipedge-epoll")
	rc, err := file.SyscallConn()
	if err != nil {
		_ = file.Close()
		return nil, fmt.Errorf("sipedge: epoll: %w", err)
	}
	w := &watcher{file: file, rc: rc, conns: make(map[uint64]*watched)}
	w.waitFn = w.wait
	go w.run()
	return w, nil
}

// add watches the connection behind rc: fn runs on a goroutine of its own
// once it is readable (or closed by the peer), and must call rearm to be
// run again.
func (w *watcher) add(rc syscall.RawConn, fn func()) (*watched, error) {
	w.mu.Lock()
	w.next++
	wd := &watched{id: w.next, rc: rc, fn: fn}
	w.conns[wd.id] = wd
	w.mu.Unlock()
	if err := w.ctl(unix.EPOLL_CTL_ADD, wd); err != nil {
		w.mu.Lock()
		delete(w.conns, wd.id)
		w.mu.Unlock()
		return nil, err
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
	return w.ctl(unix.EPOLL_CTL_MOD, wd)
}

// remove stops watching and waits for a running fn to return; call it
// before closing the connection, and never from fn.
func (w *watcher) remove(wd *watched) {
	wd.mu.Lock()
	wd.removed = true
	wd.mu.Unlock()
	_ = w.ctl(unix.EPOLL_CTL_DEL, wd)
	w.mu.Lock()
	delete(w.conns, wd.id)
	w.mu.Unlock()
	wd.running.Wait()
}

func (w *watcher) ctl(op int, wd *watched) error {
	var cerr error
	err := w.rc.Control(func(epfd uintptr) {
		cerr = wd.rc.Control(func(fd uintptr) {
			ev := unix.EpollEvent{Events: watchEvents}
			// The id goes in the 64-bit data field (Fd and Pad).
			ev.Fd = int32(uint32(wd.id))
			ev.Pad = int32(uint32(wd.id >> 32))
			if err := unix.EpollCtl(int(epfd), op, int(fd), &ev); err != nil {
				cerr = fmt.Errorf("sipedge: epoll_ctl: %w", err)
			}
		})
	})
	if err != nil {
		return err
	}
	return cerr
}

// run starts fn of every connection reported readable, until close.
func (w *watcher) run() {
	for {
		if err := w.rc.Read(w.waitFn); err != nil {
			return // closed
		}
		if w.werr != nil {
			return
		}
		for i := range w.n {
			ev := w.evs[i]
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			w.mu.Lock()
			wd := w.conns[id]
			w.mu.Unlock()
			if wd == nil {
				continue // removed since
			}
			wd.mu.Lock()
			if !wd.removed {
				wd.running.Add(1)
				go func() {
					defer wd.running.Done()
					wd.fn()
				}()
			}
			wd.mu.Unlock()
		}
	}
}

// wait collects ready connections without blocking; false parks the
// goroutine until the epoll descriptor is readable.
func (w *watcher) wait(epfd uintptr) bool {
	n, err := unix.EpollWait(int(epfd), w.evs[:], 0)
	w.n = max(n, 0)
	switch {
	case err == nil:
		return n > 0
	case errors.Is(err, unix.EINTR):
		return true
	default:
		w.werr = err
		return true
	}
}

func (w *watcher) close() { _ = w.file.Close() }

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
