package main

import "time"

// The legitimate load is open-loop: a phase of duration d at rate r req/s
// has slots n = 0, 1, ..., slotCount(d, r)-1, slot n falling due slotTime(n, r)
// after the phase starts, whatever the gateway does. Client i of u takes the
// slots n with n % u == i, so each client sends every u/r seconds and the
// clients together are evenly spread at 1/r. Times are computed from the slot
// number, never by adding intervals, so no rounding accumulates.

// slotTime returns when slot n falls due, measured from the phase start.
// n and rate are bounded by validation (n*1e9 stays far below 2^63).
func slotTime(n int64, rate int) time.Duration {
	return time.Duration(n * int64(time.Second) / int64(rate))
}

// slotCount returns how many slots fall due within d at rate req/s: those
// with slotTime(n) < d.
func slotCount(d time.Duration, rate int) int64 {
	if d <= 0 || rate <= 0 {
		return 0
	}
	// n*1e9/rate < d  <=>  n*1e9 < d*rate (exact in integers when the
	// division truncates): n < ceil(d*rate/1e9).
	num := int64(d) * int64(rate)
	return (num + int64(time.Second) - 1) / int64(time.Second)
}

// clientSlots returns the due times of client i of users within a phase of
// total slots at rate req/s.
func clientSlots(i, users int, total int64, rate int) []time.Duration {
	if i < 0 || i >= users || int64(i) >= total {
		return nil
	}
	out := make([]time.Duration, 0, (total-int64(i)+int64(users)-1)/int64(users))
	for n := int64(i); n < total; n += int64(users) {
		out = append(out, slotTime(n, rate))
	}
	return out
}
