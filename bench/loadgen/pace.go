package main

import "time"

// pacer sleeps with sub-millisecond precision. time.Sleep cannot: when the
// Go scheduler is idle it waits in epoll with millisecond granularity, so a
// 100 µs sleep often lasts a whole millisecond, which would be charged to
// every request's latency.
//
// On Linux the pacer waits on a timerfd through the netpoller: the epoll
// wait wakes when the timer fires, to the microsecond, and the goroutine
// sleeps without an OS thread of its own, so the whole load generator runs
// on one thread (GOMAXPROCS=1 when pinned to one CPU) with no thread
// hand-offs. Elsewhere it falls back to time.Sleep.
type pacer struct{ t *timer }

func newPacer() (*pacer, error) {
	t, err := newTimer()
	if err != nil {
		return nil, err
	}
	return &pacer{t: t}, nil
}

func (p *pacer) sleep(d time.Duration) error { return p.t.sleep(d) }

func (p *pacer) close() { p.t.close() }
