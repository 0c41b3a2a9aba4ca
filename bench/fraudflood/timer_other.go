//go:build !linux

package main

import "time"

// timer falls back to time.Sleep, which may wake up to a millisecond late.
// The benchmark itself needs Linux (many loopback source addresses).
type timer struct{}

func newTimer() (*timer, error) { return &timer{}, nil }

func (*timer) sleep(d time.Duration) error {
	time.Sleep(d)
	return nil
}

func (*timer) close() {}
