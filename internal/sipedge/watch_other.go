//go:build !linux

package sipedge

import (
	"errors"
	"syscall"
)

// Without epoll every backend connection has a reading goroutine.
type watcher struct{}

type watched struct{}

func newWatcher() (*watcher, error) { return nil, errors.New("sipedge: no epoll on this system") }

func (w *watcher) add(syscall.RawConn, func(*watched)) (*watched, error) {
	return nil, errors.ErrUnsupported
}
func (w *watcher) rearm(*watched) error { return errors.ErrUnsupported }
func (w *watcher) remove(*watched)      {}
func (w *watcher) close()               {}

func tryRead(syscall.RawConn, []byte) (int, error) { return 0, errors.ErrUnsupported }
