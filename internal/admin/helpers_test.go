package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeControl is an in-memory fraud engine.
type fakeControl struct {
	mu      sync.Mutex
	lists   map[store.List]map[netip.Prefix]store.Entry
	err     error // returned by every call when set
	stats   fraud.Stats
	calls   []string
	inspect fraud.SourceInfo
}

func newFakeControl() *fakeControl {
	return &fakeControl{lists: map[store.List]map[netip.Prefix]store.Entry{
		store.Blacklist: {}, store.Whitelist: {},
	}}
}

func (f *fakeControl) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeControl) add(l store.List, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("add %s %s %s %q", l, p, d, note))
	if f.err != nil {
		return store.Entry{}, f.err
	}
	if !p.IsValid() || p != p.Masked() {
		return store.Entry{}, fmt.Errorf("prefix %s: %w", p, fraud.ErrInvalid)
	}
	e := store.Entry{List: l, Prefix: p, Origin: store.Manual, Reason: "manual", Note: note, Created: testNow}
	if d > 0 {
		e.Expires = testNow.Add(d)
	}
	f.lists[l][p] = e
	if l == store.Whitelist {
		for bp := range f.lists[store.Blacklist] {
			if p.Overlaps(bp) && p.Bits() <= bp.Bits() {
				delete(f.lists[store.Blacklist], bp)
			}
		}
	}
	return e, nil
}

func (f *fakeControl) remove(l store.List, p netip.Prefix) (store.Entry, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("remove %s %s", l, p))
	if f.err != nil {
		return store.Entry{}, false, f.err
	}
	e, ok := f.lists[l][p]
	delete(f.lists[l], p)
	return e, ok, nil
}

func (f *fakeControl) Ban(_ context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	return f.add(store.Blacklist, p, d, note)
}

func (f *fakeControl) Unban(_ context.Context, p netip.Prefix) (store.Entry, bool, error) {
	return f.remove(store.Blacklist, p)
}

func (f *fakeControl) Allow(_ context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	return f.add(store.Whitelist, p, d, note)
}

func (f *fakeControl) Disallow(_ context.Context, p netip.Prefix) (store.Entry, bool, error) {
	return f.remove(store.Whitelist, p)
}

func (f *fakeControl) Entries(_ context.Context, l store.List) ([]store.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	var out []store.Entry
	for _, e := range f.lists[l] {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b store.Entry) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out, nil
}

func (f *fakeControl) Inspect(_ context.Context, a netip.Addr) (fraud.SourceInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return fraud.SourceInfo{}, f.err
	}
	si := f.inspect
	si.Addr, si.Allowed = a, true
	for p, e := range f.lists[store.Blacklist] {
		if p.Contains(a) {
			si.Blacklisted, si.Allowed = &e, false
		}
	}
	for p, e := range f.lists[store.Whitelist] {
		if p.Contains(a) {
			si.Whitelisted = &e
		}
	}
	return si, nil
}

func (f *fakeControl) Stats() fraud.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// memStore keeps meta values; the rest of store.Store is not needed here.
type memStore struct {
	store.Store // nil: any other method panics, which a test would show
	mu          sync.Mutex
	meta        map[string][]byte
	err         error
}

func newMemStore() *memStore { return &memStore{meta: map[string][]byte{}} }

func (m *memStore) GetMeta(_ context.Context, k string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, false, m.err
	}
	v, ok := m.meta[k]
	return bytes.Clone(v), ok, nil
}

func (m *memStore) PutMeta(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	m.meta[k] = bytes.Clone(v)
	return nil
}

// env is a running admin server with a TCP and a unix listener.
type env struct {
	srv      *Server
	ctrl     *fakeControl
	ring     *event.Ring
	sink     *event.Recorder
	st       *memStore
	reg      *prometheus.Registry
	metrics  *Metrics
	token    string
	tcpURL   string
	sockPath string
	tcp      *http.Client
	unix     *http.Client
	served   chan error // one value per listener when Serve returns
	cancel   context.CancelFunc
	ready    error
	readyMu  sync.Mutex
	snapshot func(ctx context.Context, w io.Writer) error
}

type envOption func(*env, *Server)

// socketDir returns a short temporary directory: unix socket paths are
// limited to 107 bytes, which t.TempDir() can exceed.
func socketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pbxg-admin")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func startEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{
		ctrl: newFakeControl(),
		ring: event.NewRing(1000),
		sink: new(event.Recorder),
		st:   newMemStore(),
		reg:  prometheus.NewRegistry(),
	}
	ctx := context.Background()
	token, created, err := EnsureToken(ctx, e.st)
	if err != nil || !created {
		t.Fatalf("EnsureToken = %v, %v", created, err)
	}
	e.token = token
	hv, err := LoadVerifier(ctx, e.st)
	if err != nil {
		t.Fatal(err)
	}
	e.metrics = NewMetrics(e.reg, e.ctrl.Stats)
	srv, err := New(Config{
		Token:    hv,
		Store:    e.st,
		Ready:    func() error { e.readyMu.Lock(); defer e.readyMu.Unlock(); return e.ready },
		Registry: e.reg,
		Events:   e.ring,
		Sink:     event.Fanout{e.sink, e.metrics},
		Control:  e.ctrl,
		Snapshot: func(ctx context.Context, w io.Writer) error { return e.snapshot(ctx, w) },
		Now:      func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.snapshot = func(_ context.Context, w io.Writer) error { _, err := io.WriteString(w, "STATE"); return err }
	for _, o := range opts {
		o(e, srv)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.tcpURL = "http://" + tl.Addr().String()
	e.sockPath = filepath.Join(socketDir(t), "admin.sock")
	ul, err := ListenUnix(e.sockPath)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	e.served = make(chan error, 2)
	go func() { e.served <- srv.Serve(sctx, tl) }()
	go func() { e.served <- srv.Serve(sctx, ul) }()
	e.tcp = &http.Client{Transport: &http.Transport{}}
	e.unix = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sockPath)
		},
	}}
	t.Cleanup(func() {
		e.tcp.CloseIdleConnections()
		e.unix.CloseIdleConnections()
		cancel()
		for range 2 {
			select {
			case err := <-e.served:
				if err != nil {
					t.Errorf("Serve returned %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve did not return after its context ended")
				return
			}
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		e.ring.Close()
	})
	return e
}

// transport names how a request reaches the server.
type transport string

const (
	viaTCP  transport = "tcp"
	viaUnix transport = "unix"
)

// do sends a request; over TCP it carries the token unless auth is set
// (auth "-" sends no Authorization header).
func (e *env) do(t testing.TB, via transport, method, path, body, auth string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	base, client := e.tcpURL, e.tcp
	if via == viaUnix {
		base, client = "http://pbxgate", e.unix
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case auth == "-":
	case auth != "":
		req.Header.Set("Authorization", auth)
	case via == viaTCP:
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// decode unmarshals b into a new T, failing the test on error.
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, b, err)
	}
	return v
}

func wantStatus(t testing.TB, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" && resp.Request.URL.Path != "/metrics" && resp.Request.URL.Path != "/api/v1/state" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
}

func errorMessage(t testing.TB, body []byte) string {
	t.Helper()
	return decode[ErrorJSON](t, body).Error
}

var errBoom = errors.New("boom")
