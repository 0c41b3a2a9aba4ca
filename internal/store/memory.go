package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Memory is a Store in maps, for tests of other packages. It validates and
// normalises like Bolt (masked prefixes, UTC times, nil empty Evidence) and
// keeps nothing when the process ends. Snapshot is not supported.
type Memory struct {
	mu      sync.Mutex // guards the fields below
	lists   map[List]map[netip.Prefix]Entry
	history map[netip.Addr]History
	meta    map[string][]byte
	closed  bool
	done    chan struct{} // closed by Close; wakes Watch
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty Memory store.
func NewMemory() *Memory {
	return &Memory{
		lists: map[List]map[netip.Prefix]Entry{
			Blacklist: {},
			Whitelist: {},
		},
		history: map[netip.Addr]History{},
		meta:    map[string][]byte{"schema": []byte(schemaVersion)},
		done:    make(chan struct{}),
	}
}

// beginLocked checks ctx and Close, with m.mu held.
func (m *Memory) beginLocked(ctx context.Context) error {
	if m.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// copyEntry returns e with its own Evidence and normalised times.
func copyEntry(e Entry) Entry {
	if len(e.Evidence) == 0 {
		e.Evidence = nil
	} else {
		e.Evidence = slices.Clone(e.Evidence)
	}
	e.Created = normTime(e.Created)
	e.FirstSeen = normTime(e.FirstSeen)
	e.LastSeen = normTime(e.LastSeen)
	e.Expires = normTime(e.Expires)
	return e
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, e Entry) error {
	e, _, err := checkEntry(e)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return err
	}
	if err != nil {
		return err
	}
	m.lists[e.List][e.Prefix] = copyEntry(e)
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return Entry{}, false, err
	}
	p, err := checkKey(l, p)
	if err != nil {
		return Entry{}, false, err
	}
	e, ok := m.lists[l][p]
	if !ok {
		return Entry{}, false, nil
	}
	return copyEntry(e), true, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return Entry{}, false, err
	}
	p, err := checkKey(l, p)
	if err != nil {
		return Entry{}, false, err
	}
	e, ok := m.lists[l][p]
	if !ok {
		return Entry{}, false, nil
	}
	delete(m.lists[l], p)
	return e, true, nil
}

// Range implements Store, in the same order as Bolt. It calls fn on a copy
// taken under the lock, so fn may call the store (Bolt's may not).
func (m *Memory) Range(ctx context.Context, l List, fn func(Entry) bool) error {
	m.mu.Lock()
	if err := m.beginLocked(ctx); err != nil {
		m.mu.Unlock()
		return err
	}
	if _, err := listBucket(l); err != nil {
		m.mu.Unlock()
		return err
	}
	entries := make([]Entry, 0, len(m.lists[l]))
	for _, e := range m.lists[l] {
		entries = append(entries, copyEntry(e))
	}
	m.mu.Unlock()
	slices.SortFunc(entries, func(a, b Entry) int {
		ka, kb := prefixKey(a.Prefix), prefixKey(b.Prefix)
		return bytes.Compare(ka[:], kb[:])
	})
	for i, e := range entries {
		if i%ctxCheckEvery == ctxCheckEvery-1 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("store: %w", err)
			}
		}
		if !fn(e) {
			break
		}
	}
	return nil
}

// Count implements Store.
func (m *Memory) Count(ctx context.Context, l List) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return 0, err
	}
	if _, err := listBucket(l); err != nil {
		return 0, err
	}
	return len(m.lists[l]), nil
}

// RecordBans implements Store. Entries are checked before anything is
// written, so an invalid one leaves the store as it was.
func (m *Memory) RecordBans(ctx context.Context, window time.Duration, bans []AutoBan) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return err
	}
	if err := checkAutoBans(window, bans); err != nil {
		return err
	}
	hist := make(map[netip.Addr]History, len(bans))
	var put []Entry
	for _, b := range bans {
		old, ok := hist[b.Addr]
		if !ok {
			old = m.history[b.Addr]
		}
		h := nextHistory(old, b.At, window)
		hist[b.Addr] = h
		e, ok := b.Entry(h)
		if !ok {
			continue
		}
		e, _, err := checkAutoBanEntry(e)
		if err != nil {
			return err
		}
		put = append(put, e)
	}
	for a, h := range hist {
		m.history[a] = h
	}
	for _, e := range put {
		m.lists[e.List][e.Prefix] = copyEntry(e)
	}
	return nil
}

// PruneHistory implements Store.
func (m *Memory) PruneHistory(ctx context.Context, cutoff time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return 0, err
	}
	n := 0
	for a, h := range m.history {
		if h.Last.Before(cutoff) {
			delete(m.history, a)
			n++
		}
	}
	return n, nil
}

// GetMeta implements Store.
func (m *Memory) GetMeta(ctx context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return nil, false, err
	}
	if err := checkMetaKey(key); err != nil {
		return nil, false, err
	}
	v, ok := m.meta[key]
	if !ok {
		return nil, false, nil
	}
	return append([]byte{}, v...), true, nil
}

// PutMeta implements Store.
func (m *Memory) PutMeta(ctx context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return err
	}
	if err := checkMetaPut(key, value); err != nil {
		return err
	}
	m.meta[key] = append([]byte{}, value...)
	return nil
}

// errNoSnapshot is what Memory.Snapshot returns.
var errNoSnapshot = fmt.Errorf("memory store has no snapshot: %w", errors.ErrUnsupported)

// Snapshot returns an error wrapping errors.ErrUnsupported.
func (m *Memory) Snapshot(ctx context.Context, w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.beginLocked(ctx); err != nil {
		return err
	}
	return errNoSnapshot
}

// Watch blocks until ctx ends and returns nil, or returns ErrClosed when
// the store is (or gets) closed first. fn is never called.
func (m *Memory) Watch(ctx context.Context, fn func(Change)) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case <-ctx.Done():
		return nil
	case <-m.done:
		return ErrClosed
	}
}

// Close implements Store. It is idempotent.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.done)
	}
	return nil
}
