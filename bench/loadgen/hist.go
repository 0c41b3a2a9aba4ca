package main

import (
	"math"
	"math/bits"
)

// subBits sets the histogram precision: each power-of-two range of values is
// split into 2^subBits equal buckets, so a recorded value is known to within
// 1/2^subBits (under 0.8%) of itself, like an HdrHistogram with two
// significant digits.
const subBits = 7

const (
	subCount = 1 << subBits
	// nBuckets covers every uint64: the largest shift is 64-(subBits+1).
	nBuckets = (64-(subBits+1))*subCount + 2*subCount
)

// hist is a log-linear histogram of non-negative integer values (here
// nanoseconds). The zero value is empty and ready to use. It is not safe for
// concurrent use; give each goroutine its own and merge them.
type hist struct {
	counts [nBuckets]uint64
	total  uint64
	max    uint64
}

// bucketOf returns the bucket index of v. Values below 2*subCount have a
// bucket each; above, a value keeps its top subBits+1 bits.
func bucketOf(v uint64) int {
	shift := bits.Len64(v) - (subBits + 1)
	if shift <= 0 {
		return int(v)
	}
	return shift*subCount + int(v>>uint(shift))
}

// upperOf returns the largest value that falls in bucket i.
func upperOf(i int) uint64 {
	if i < 2*subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	top := uint64(i - shift*subCount)
	return (top+1)<<uint(shift) - 1
}

// record adds one value.
func (h *hist) record(v uint64) {
	h.counts[bucketOf(v)]++
	h.total++
	if v > h.max {
		h.max = v
	}
}

// merge adds every value of o to h.
func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	if o.max > h.max {
		h.max = o.max
	}
}

// quantile returns the value at quantile q in [0, 1]: the upper bound of the
// bucket holding the ceil(q*total)-th smallest value, capped at the maximum
// recorded. It returns 0 when h is empty.
func (h *hist) quantile(q float64) uint64 {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(upperOf(i), h.max)
		}
	}
	return h.max
}
