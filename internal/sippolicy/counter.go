package sippolicy

import (
	"fmt"
	"sync"
)

// Counter holds concurrent-call counts by key. Acquire is all-or-nothing
// across keys. It is the seam for a shared backend (Redis) through which
// several gateways enforce one set of limits; MemoryCounter serves a single
// gateway. Implementations must be safe for concurrent use.
//
// Calls uses the keys "brand/<brand>", "company/<company>" and
// "rw/<company>/<user>" (brand and company names contain no '/').
type Counter interface {
	// Acquire increments every key if, for each i, count(keys[i]) <
	// limits[i] (a limit <= 0 means unlimited; the key is still counted).
	// It returns ok=false and the index of the first key at its limit
	// otherwise, changing nothing. err != nil means the counts could not
	// be read: callers must refuse the call (fail closed). keys are
	// distinct; len(limits) == len(keys).
	Acquire(keys []string, limits []int) (ok bool, full int, err error)
	// Add increments every key without a limit check (a call answered
	// without a prior slot).
	Add(keys []string) error
	// Release decrements every key, never below zero.
	Release(keys []string) error
	// Count returns the count of key, 0 if unknown.
	Count(key string) (int, error)
}

// MemoryCounter is a Counter in process memory: a mutex and a map. Keys
// whose count drops to zero are deleted, so it holds only keys in use. The
// zero value is not ready; use NewMemoryCounter.
type MemoryCounter struct {
	mu sync.Mutex // guards n
	n  map[string]int
}

var _ Counter = (*MemoryCounter)(nil)

// NewMemoryCounter returns an empty MemoryCounter.
func NewMemoryCounter() *MemoryCounter {
	return &MemoryCounter{n: make(map[string]int)}
}

// Acquire implements Counter. full is -1 when ok. Its only error is a
// length mismatch between keys and limits.
func (m *MemoryCounter) Acquire(keys []string, limits []int) (ok bool, full int, err error) {
	if len(keys) != len(limits) {
		return false, -1, fmt.Errorf("sippolicy: Acquire: %d keys but %d limits", len(keys), len(limits))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		if l := limits[i]; l > 0 && m.n[k] >= l {
			return false, i, nil
		}
	}
	for _, k := range keys {
		m.n[k]++
	}
	return true, -1, nil
}

// Add implements Counter. It never fails.
func (m *MemoryCounter) Add(keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.n[k]++
	}
	return nil
}

// Release implements Counter. It never fails.
func (m *MemoryCounter) Release(keys []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		switch n := m.n[k]; {
		case n > 1:
			m.n[k] = n - 1
		case n == 1:
			delete(m.n, k)
		}
	}
	return nil
}

// Count implements Counter. It never fails.
func (m *MemoryCounter) Count(key string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[key], nil
}

// Len returns how many keys have a non-zero count.
func (m *MemoryCounter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.n)
}
