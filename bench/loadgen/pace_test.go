package main

import (
	"testing"
	"time"
)

func TestPacerSleepsAtLeast(t *testing.T) {
	p, err := newPacer()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	for _, d := range []time.Duration{time.Nanosecond, 50 * time.Microsecond, 300 * time.Microsecond, 2 * time.Millisecond} {
		t.Run(d.String(), func(t *testing.T) {
			for range 5 { // a timerfd is reused: each sleep must wait again
				start := time.Now()
				if err := p.sleep(d); err != nil {
					t.Fatal(err)
				}
				if got := time.Since(start); got < d {
					t.Fatalf("sleep(%v) returned after %v", d, got)
				}
			}
		})
	}
}
