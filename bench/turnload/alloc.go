package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"
)

// alloc: allocations per second, closed loop. Each of -concurrency workers
// repeats what a fresh client does: open a socket (a new 5-tuple), send an
// unauthenticated Allocate, take the 401's nonce, Allocate with
// MESSAGE-INTEGRITY, end the allocation with Refresh(lifetime 0), close the
// socket. An allocation counts when its Refresh succeeded in the window.
type alloc struct {
	conc int
}

func newAlloc(fs *flag.FlagSet) *alloc {
	a := &alloc{}
	fs.IntVar(&a.conc, "concurrency", 32, "allocations in progress at once")
	return a
}

func (a *alloc) check() error {
	if a.conc < 1 || a.conc > 4096 {
		return errors.New("-concurrency 1..4096")
	}
	return nil
}

type allocCount struct {
	ok, failed int64
	firstErr   error
	lat        hist // one full cycle: three round trips
}

func (a *alloc) run(ctx context.Context, c *common, res *result) error {
	m := &meter{pid: c.pid, srvCPUs: c.srvCPUs}
	counts := make([]allocCount, a.conc)
	var wg sync.WaitGroup
	for w := range counts {
		wg.Go(func() { a.loop(c, w, m, &counts[w]) })
	}
	err := m.measure(ctx, c.warmup, c.window)
	wg.Wait()
	if err != nil {
		return err
	}
	var t allocCount
	for i := range counts {
		n := &counts[i]
		t.ok += n.ok
		t.failed += n.failed
		if t.firstErr == nil {
			t.firstErr = n.firstErr
		}
		t.lat.merge(&n.lat)
	}
	if t.ok == 0 {
		return fmt.Errorf("no allocation completed in the window (%d failed; first error: %v)", t.failed, t.firstErr)
	}
	res.add("concurrency", a.conc)
	res.add("rate", rate(t.ok, m.elapsed))
	res.add("ok", t.ok)
	res.add("failed", t.failed)
	res.add("p50_ms", float64(t.lat.quantile(0.5).Microseconds())/1000)
	res.add("p99_ms", float64(t.lat.quantile(0.99).Microseconds())/1000)
	if t.firstErr != nil {
		res.add("first_error", t.firstErr.Error())
	}
	m.report(res, t.ok)
	return nil
}

func (a *alloc) loop(c *common, w int, m *meter, n *allocCount) {
	for i := 0; !m.done.Load(); i++ {
		t0 := time.Now()
		err := a.once(c, w+i*a.conc)
		if !m.on.Load() {
			continue
		}
		if err != nil {
			n.failed++
			if n.firstErr == nil {
				n.firstErr = err
			}
			continue
		}
		n.ok++
		n.lat.record(time.Since(t0))
	}
}

func (a *alloc) once(c *common, i int) error {
	s, err := newSession(c.src, c.credential(i), c.timeout)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.allocate(10 * time.Minute); err != nil {
		return err
	}
	return s.refresh(0)
}
