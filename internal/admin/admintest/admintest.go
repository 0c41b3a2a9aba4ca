// Package admintest runs a real admin server (on a unix socket and a
// loopback TCP listener) in front of an in-memory stand-in for the fraud
// engine, for the tests of the admin API's clients (package adminclient,
// the CLI). It is test support only: nothing in the program imports it.
package admintest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
)

// Control is an in-memory admin.Control: entries in two maps, manual
// entries only, created at Now.
type Control struct {
	Now func() time.Time

	mu      sync.Mutex // guards the fields below
	lists   map[store.List]map[netip.Prefix]store.Entry
	err     error
	stats   fraud.Stats
	inspect fraud.SourceInfo
}

// NewControl returns an empty Control whose clock is now.
func NewControl(now func() time.Time) *Control {
	return &Control{Now: now, lists: map[store.List]map[netip.Prefix]store.Entry{
		store.Blacklist: {}, store.Whitelist: {},
	}}
}

// SetErr makes every call fail with err (nil: succeed again).
func (c *Control) SetErr(err error) { c.mu.Lock(); c.err = err; c.mu.Unlock() }

// SetStats sets what Stats returns.
func (c *Control) SetStats(s fraud.Stats) { c.mu.Lock(); c.stats = s; c.mu.Unlock() }

// SetInspect sets the score fields Inspect returns (Addr, Allowed and the
// entries are filled in from the lists).
func (c *Control) SetInspect(si fraud.SourceInfo) { c.mu.Lock(); c.inspect = si; c.mu.Unlock() }

// Put stores e as is (an automatic ban, say).
func (c *Control) Put(e store.Entry) { c.mu.Lock(); c.lists[e.List][e.Prefix] = e; c.mu.Unlock() }

func (c *Control) add(l store.List, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return store.Entry{}, c.err
	}
	if !p.IsValid() || p != p.Masked() || d < 0 {
		return store.Entry{}, fmt.Errorf("%s for %v: %w", p, d, fraud.ErrInvalid)
	}
	now := c.Now()
	e := store.Entry{List: l, Prefix: p, Origin: store.Manual, Reason: "manual", Note: note, Created: now}
	if d > 0 {
		e.Expires = now.Add(d)
	}
	c.lists[l][p] = e
	if l == store.Whitelist {
		for bp := range c.lists[store.Blacklist] {
			if p.Overlaps(bp) && p.Bits() <= bp.Bits() {
				delete(c.lists[store.Blacklist], bp)
			}
		}
	}
	return e, nil
}

func (c *Control) remove(l store.List, p netip.Prefix) (store.Entry, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return store.Entry{}, false, c.err
	}
	e, ok := c.lists[l][p]
	delete(c.lists[l], p)
	return e, ok, nil
}

// Ban implements admin.Control.
func (c *Control) Ban(_ context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	return c.add(store.Blacklist, p, d, note)
}

// Unban implements admin.Control.
func (c *Control) Unban(_ context.Context, p netip.Prefix) (store.Entry, bool, error) {
	return c.remove(store.Blacklist, p)
}

// Allow implements admin.Control; it lifts bans inside p.
func (c *Control) Allow(_ context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	return c.add(store.Whitelist, p, d, note)
}

// Disallow implements admin.Control.
func (c *Control) Disallow(_ context.Context, p netip.Prefix) (store.Entry, bool, error) {
	return c.remove(store.Whitelist, p)
}

// Entries implements admin.Control, in prefix order.
func (c *Control) Entries(_ context.Context, l store.List) ([]store.Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	out := make([]store.Entry, 0, len(c.lists[l]))
	for _, e := range c.lists[l] {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b store.Entry) int {
		if n := a.Prefix.Addr().Compare(b.Prefix.Addr()); n != 0 {
			return n
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

// Inspect implements admin.Control.
func (c *Control) Inspect(_ context.Context, a netip.Addr) (fraud.SourceInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return fraud.SourceInfo{}, c.err
	}
	si := c.inspect
	si.Addr, si.Allowed = a, true
	for p, e := range c.lists[store.Blacklist] {
		if p.Contains(a) {
			si.Blacklisted, si.Allowed = &e, false
		}
	}
	for p, e := range c.lists[store.Whitelist] {
		if p.Contains(a) {
			si.Whitelisted, si.Allowed = &e, true
		}
	}
	return si, nil
}

// Stats implements admin.Control.
func (c *Control) Stats() fraud.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// metaStore keeps the token hash; the rest of store.Store is not used by
// the admin server.
type metaStore struct {
	store.Store // nil: other methods are not expected
	mu          sync.Mutex
	meta        map[string][]byte
}

func (m *metaStore) GetMeta(_ context.Context, k string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.meta[k]
	return bytes.Clone(v), ok, nil
}

func (m *metaStore) PutMeta(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.meta[k] = bytes.Clone(v)
	return nil
}

// Env is a running admin server.
type Env struct {
	Server  *admin.Server
	Control *Control
	Events  *event.Ring
	Socket  string // unix socket path
	URL     string // "http://127.0.0.1:port"
	Token   string // the admin token
	// State is what GET /api/v1/state sends.
	State []byte
}

// Start runs an admin server for the rest of the test; t.Cleanup stops it
// and checks that Serve returned cleanly. now is the server's and the
// Control's clock.
func Start(t testing.TB, now func() time.Time) *Env {
	t.Helper()
	ctx := context.Background()
	st := &metaStore{meta: map[string][]byte{}}
	token, _, err := admin.EnsureToken(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	hv, err := admin.LoadVerifier(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{Control: NewControl(now), Events: event.NewRing(1000), Token: token, State: []byte("pbxgate state snapshot")}
	e.Server, err = admin.New(admin.Config{
		Token:   hv,
		Store:   st,
		Events:  e.Events,
		Control: e.Control,
		Now:     now,
		Snapshot: func(_ context.Context, w io.Writer) error {
			_, err := w.Write(e.State)
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "pbxg-admintest") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	e.Socket = filepath.Join(dir, "admin.sock")
	ul, err := admin.ListenUnix(e.Socket)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.URL = "http://" + tl.Addr().String()
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan error, 2)
	go func() { served <- e.Server.Serve(sctx, ul) }()
	go func() { served <- e.Server.Serve(sctx, tl) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("admin Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("admin Serve did not return")
			}
		}
		e.Server.Close()
		e.Events.Close()
		os.RemoveAll(dir)
	})
	return e
}
