package main

import (
	"runtime"
	"time"
)

// pacer sleeps with sub-millisecond precision. time.Sleep cannot: when the
// Go scheduler is idle it waits in epoll with millisecond granularity, so a
// 100 µs sleep often lasts a whole millisecond, which would be charged to
// every request's latency. On Linux the pacer sleeps with nanosleep on an OS
// thread of its own, with the thread's timer slack lowered.
type pacer struct{}

// newPacer locks the calling goroutine to its OS thread until close.
func newPacer() *pacer {
	runtime.LockOSThread()
	lowerTimerSlack()
	return &pacer{}
}

func (*pacer) sleep(d time.Duration) { sleepPrecise(d) }

func (*pacer) close() { runtime.UnlockOSThread() }
