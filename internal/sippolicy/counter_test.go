package sippolicy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

func counts(t *testing.T, c Counter, keys ...string) []int {
	t.Helper()
	out := make([]int, len(keys))
	for i, k := range keys {
		n, err := c.Count(k)
		if err != nil {
			t.Fatalf("Count(%q): %v", k, err)
		}
		out[i] = n
	}
	return out
}

func TestMemoryCounter(t *testing.T) {
	type step struct {
		op     string // acquire, add, release
		keys   []string
		limits []int
		ok     bool
		full   int
		after  []int // counts of a, b, c afterwards
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"limits then full", []step{
			{"acquire", []string{"a", "b"}, []int{2, 1}, true, -1, []int{1, 1, 0}},
			{"acquire", []string{"a", "c"}, []int{2, 0}, true, -1, []int{2, 1, 1}},
			{"acquire", []string{"a", "c"}, []int{2, 0}, false, 0, []int{2, 1, 1}},
			{"acquire", []string{"c", "b"}, []int{0, 1}, false, 1, []int{2, 1, 1}}, // all or nothing
			{"release", []string{"a"}, nil, true, 0, []int{1, 1, 1}},
			{"acquire", []string{"a", "c"}, []int{2, 0}, true, -1, []int{2, 1, 2}},
		}},
		{"zero limit counts", []step{
			{"acquire", []string{"a"}, []int{0}, true, -1, []int{1, 0, 0}},
			{"acquire", []string{"a"}, []int{0}, true, -1, []int{2, 0, 0}},
			{"acquire", []string{"a"}, []int{-1}, true, -1, []int{3, 0, 0}},
		}},
		{"add ignores limits", []step{
			{"acquire", []string{"a"}, []int{1}, true, -1, []int{1, 0, 0}},
			{"add", []string{"a", "b"}, nil, true, 0, []int{2, 1, 0}},
			{"acquire", []string{"a"}, []int{1}, false, 0, []int{2, 1, 0}},
			{"acquire", []string{"a"}, []int{3}, true, -1, []int{3, 1, 0}},
		}},
		{"release never below zero", []step{
			{"release", []string{"a", "b"}, nil, true, 0, []int{0, 0, 0}},
			{"add", []string{"a"}, nil, true, 0, []int{1, 0, 0}},
			{"release", []string{"a", "a", "a"}, nil, true, 0, []int{0, 0, 0}},
			{"acquire", []string{"a"}, []int{1}, true, -1, []int{1, 0, 0}},
		}},
		{"no keys", []step{
			{"acquire", nil, nil, true, -1, []int{0, 0, 0}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewMemoryCounter()
			for i, s := range tt.steps {
				var err error
				switch s.op {
				case "acquire":
					var ok bool
					var full int
					ok, full, err = c.Acquire(s.keys, s.limits)
					if ok != s.ok || full != s.full {
						t.Fatalf("step %d: Acquire = %v, %d; want %v, %d", i, ok, full, s.ok, s.full)
					}
				case "add":
					err = c.Add(s.keys)
				case "release":
					err = c.Release(s.keys)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := counts(t, c, "a", "b", "c"); fmt.Sprint(got) != fmt.Sprint(s.after) {
					t.Fatalf("step %d: counts %v, want %v", i, got, s.after)
				}
				nonzero := 0
				for _, n := range s.after {
					if n > 0 {
						nonzero++
					}
				}
				if c.Len() != nonzero {
					t.Fatalf("step %d: %d keys kept, want %d (zero counts are deleted)", i, c.Len(), nonzero)
				}
			}
		})
	}
}

func TestMemoryCounterMismatch(t *testing.T) {
	c := NewMemoryCounter()
	if ok, _, err := c.Acquire([]string{"a", "b"}, []int{1}); ok || err == nil {
		t.Fatalf("Acquire with 2 keys and 1 limit: ok %v, err %v", ok, err)
	}
	if c.Len() != 0 {
		t.Fatal("a failed Acquire counted")
	}
}

func TestMemoryCounterConcurrent(t *testing.T) {
	const (
		limit   = 7
		workers = 8
		rounds  = 500
	)
	c := NewMemoryCounter()
	var held, maxHeld atomic.Int64
	var wg sync.WaitGroup
	keys := []string{"brand/x", "company/y"}
	for range workers {
		wg.Go(func() {
			for range rounds {
				ok, _, err := c.Acquire(keys, []int{limit, 0})
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					continue
				}
				h := held.Add(1)
				for {
					m := maxHeld.Load()
					if h <= m || maxHeld.CompareAndSwap(m, h) {
						break
					}
				}
				held.Add(-1)
				if err := c.Release(keys); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if maxHeld.Load() > limit {
		t.Errorf("%d slots held at once, limit %d", maxHeld.Load(), limit)
	}
	if c.Len() != 0 {
		t.Errorf("%d keys left after every release", c.Len())
	}
}
