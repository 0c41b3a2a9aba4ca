package main

import (
	"math/bits"
	"time"
)

// hist is a log-linear histogram of durations in microseconds: each
// power-of-two range is split into 32 buckets (values known to about 3 %).
// Not safe for concurrent use: one per goroutine, merged at the end.
type hist struct {
	counts [64 * 32]uint64
	n      uint64
	max    uint64
}

const histSub = 5 // log2 of the buckets per power of two

func histBucket(v uint64) int {
	shift := bits.Len64(v) - (histSub + 1)
	if shift <= 0 {
		return int(v)
	}
	return shift<<histSub + int(v>>uint(shift))
}

// histUpper is the largest value in bucket i.
func histUpper(i int) uint64 {
	if i < 2<<histSub {
		return uint64(i)
	}
	shift := i>>histSub - 1
	top := uint64(i - shift<<histSub)
	return (top+1)<<uint(shift) - 1
}

func (h *hist) record(d time.Duration) {
	v := uint64(max(d, 0) / time.Microsecond)
	h.counts[histBucket(v)]++
	h.n++
	h.max = max(h.max, v)
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the value at quantile q (0..1), the bucket's upper
// bound, at most the largest value recorded; 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max)) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}
