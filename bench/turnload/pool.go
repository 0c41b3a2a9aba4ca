package main

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The channel every allocation binds (channels are per allocation, so one
// number serves them all).
const benchChannel = 0x4000

// allocLifetime is the lifetime asked for held allocations: longer than any
// run, so none is refreshed during one.
const allocLifetime = time.Hour

// openSessions opens n allocations with conc requests in flight, each with
// a channel to peer when peer is valid. An allocation that fails is tried
// again on a fresh socket, up to three times; the retries are returned.
func openSessions(ctx context.Context, c *common, first, n, conc int, peer netip.AddrPort) ([]*session, int64, error) {
	ss := make([]*session, n)
	var next, retries atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for w := 0; w < min(conc, n); w++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				s, err := openOne(c, first+i, peer, &retries)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("allocation %d: %w", first+i, err)
					}
					mu.Unlock()
					next.Store(int64(n)) // stop the others
					return
				}
				ss[i] = s
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeSessions(ss, conc, false)
		return nil, retries.Load(), firstErr
	}
	return ss, retries.Load(), nil
}

func openOne(c *common, i int, peer netip.AddrPort, retries *atomic.Int64) (*session, error) {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			retries.Add(1)
		}
		var s *session
		if s, err = newSession(c.src, c.credential(i), c.timeout); err != nil {
			continue
		}
		if err = s.allocate(allocLifetime); err == nil && peer.IsValid() {
			err = s.channelBind(benchChannel, peer)
		}
		if err == nil {
			return s, nil
		}
		s.close()
	}
	return nil, err
}

// closeSessions ends the allocations (Refresh with lifetime 0) when release
// is set, conc at a time, and closes the sockets. It returns how many
// Refreshes failed.
func closeSessions(ss []*session, conc int, release bool) int64 {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < max(conc, 1); w++ {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ss) {
					return
				}
				s := ss[i]
				if s == nil {
					continue
				}
				if release && s.refresh(0) != nil {
					failed.Add(1)
				}
				s.close()
			}
		})
	}
	wg.Wait()
	return failed.Load()
}
