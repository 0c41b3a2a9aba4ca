package main

import (
	"syscall"
	"time"
)

// lowerTimerSlack sets this thread's timer slack to 1 ns (default 50 µs),
// so nanosleep wakes close to the asked time. Best effort.
func lowerTimerSlack() {
	const prSetTimerslack = 29
	syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, 1, 0)
}

// sleepPrecise blocks the calling OS thread for d.
func sleepPrecise(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		if err := syscall.Nanosleep(&ts, &rem); err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
