package main

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBucketBounds(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 255, 256, 257, 511, 512, 1000, 12345, 1 << 20, 1<<40 + 7, 1<<63 + 5, ^uint64(0)}
	for _, v := range values {
		i := bucketOf(v)
		if i < 0 || i >= nBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0,%d)", v, i, nBuckets)
		}
		up := upperOf(i)
		if up < v {
			t.Errorf("upperOf(bucketOf(%d)) = %d, below the value", v, up)
		}
		if v >= 2*subCount && float64(up-v) > float64(v)/subCount {
			t.Errorf("value %d: bucket upper bound %d is more than 1/%d above it", v, up, subCount)
		}
		if v < 2*subCount && up != v {
			t.Errorf("small value %d not exact: upper %d", v, up)
		}
		if i > 0 && upperOf(i-1) >= v {
			t.Errorf("value %d: previous bucket's upper bound %d already holds it", v, upperOf(i-1))
		}
	}
}

func TestQuantileMatchesExact(t *testing.T) {
	tests := []struct {
		name string
		gen  func(r *rand.Rand) uint64
	}{
		{"uniform-small", func(r *rand.Rand) uint64 { return r.Uint64N(200) }},
		{"uniform-us", func(r *rand.Rand) uint64 { return 50_000 + r.Uint64N(1_000_000) }},
		{"exponential-tail", func(r *rand.Rand) uint64 { return uint64(r.ExpFloat64() * 300_000) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var h hist
			vals := make([]uint64, 100_000)
			for i := range vals {
				vals[i] = tc.gen(r)
				h.record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				exact := vals[int(q*float64(len(vals)-1)+0.5)]
				got := h.quantile(q)
				lo, hi := float64(exact)*(1-2.0/subCount), float64(exact)*(1+2.0/subCount)+1
				if float64(got) < lo || float64(got) > hi {
					t.Errorf("q=%v: got %d, exact %d (allowed [%.0f, %.0f])", q, got, exact, lo, hi)
				}
			}
			if h.quantile(1) != vals[len(vals)-1] {
				t.Errorf("q=1: got %d, want max %d", h.quantile(1), vals[len(vals)-1])
			}
		})
	}
}

func TestMerge(t *testing.T) {
	var a, b, all hist
	for v := uint64(0); v < 10_000; v++ {
		if v%3 == 0 {
			a.record(v * 97)
		} else {
			b.record(v * 97)
		}
		all.record(v * 97)
	}
	a.merge(&b)
	if a.total != all.total || a.max != all.max || a.counts != all.counts {
		t.Fatalf("merged histogram differs: total %d/%d max %d/%d", a.total, all.total, a.max, all.max)
	}
}

func TestEmpty(t *testing.T) {
	var h hist
	if got := h.quantile(0.99); got != 0 {
		t.Fatalf("empty quantile = %d, want 0", got)
	}
}
