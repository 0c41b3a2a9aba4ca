//go:build !linux

package udprelay

import (
	"errors"
	"syscall"
)

// goUpstreams reads each upstream socket with a goroutine of its own and a
// 64 KiB buffer: simple, and too heavy for production flow counts.
type goUpstreams struct {
	r    *Relay
	quit chan struct{}
}

func newUpstreams(r *Relay) (upstreams, error) {
	return &goUpstreams{r: r, quit: make(chan struct{})}, nil
}

// add starts f's reader; Relay.mu is held, so it cannot race Relay.stop's
// wait.
func (u *goUpstreams) add(f *Flow) error {
	u.r.wg.Add(1)
	go func() {
		defer u.r.wg.Done()
		buf := make([]byte, bufSize)
		var scratch []byte // allocated on first use: most flows never need it
		for {
			n, err := f.up.Read(buf)
			switch {
			case err == nil:
				if scratch == nil && u.r.cfg.Load().Inspect != nil {
					scratch = make([]byte, ScratchSize)
				}
				u.r.fromBackend(f, buf[:n], scratch)
			case errors.Is(err, syscall.ECONNREFUSED):
				u.r.unreachable(f)
			default:
				return // closed
			}
		}
	}()
	return nil
}

func (u *goUpstreams) run()   { <-u.quit }
func (u *goUpstreams) close() { close(u.quit) }
