package fraud

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the start of every test's fake clock: a slot boundary.
var t0 = time.Date(2026, 11, 21, 23, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time            { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Advance(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *fakeClock) Set(t time.Time)           { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) Since0() time.Duration     { return c.Now().Sub(t0) }
func (c *fakeClock) AdvanceTo(d time.Duration) { c.Set(t0.Add(d)) }

func testConfig() Config {
	return Config{
		Enabled:        true,
		Threshold:      10,
		BanFor:         30 * time.Minute,
		BanMax:         24 * time.Hour,
		RecidiveWindow: 7 * 24 * time.Hour,
		KindWeights: map[event.Kind]int{
			event.RejectedByGateway:  1,
			event.RejectedByService:  1,
			event.BackendUnreachable: 0,
		},
		ReasonWeights: map[string]int{},
		MaxSources:    1000,
		NATWindow:     time.Hour,
		NATMaxFactor:  100,
	}
}

// logBuf collects JSON log lines; safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the decoded log records whose msg is msg.
func (l *logBuf) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is an engine on a memory store with a fake clock and a captured
// log.
type harness struct {
	e     *Engine
	st    *flakyStore
	clock *fakeClock
	log   *logBuf
}

func newHarness(t testing.TB, cfg Config, mod ...func(*Options)) *harness {
	t.Helper()
	h := &harness{st: &flakyStore{Store: store.NewMemory()}, clock: newClock(), log: &logBuf{}}
	o := Options{
		Log: slog.New(slog.NewJSONHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now: h.clock.Now,
	}
	for _, f := range mod {
		f(&o)
	}
	e, err := New(cfg, h.st, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Bans one after the other are written one by one, without pacing;
	// TestBanWaveFewWrites puts the pacing back.
	e.banEvery = 0
	h.e = e
	t.Cleanup(func() {
		e.Close()
		h.st.Close()
	})
	return h
}

// flakyStore wraps a store and fails writes while failWrites is set.
type flakyStore struct {
	store.Store
	failWrites atomic.Bool
	puts       atomic.Int64
	banWrites  atomic.Int64 // RecordBans calls
}

var errFlaky = errors.New("disk on fire")

func (f *flakyStore) Put(ctx context.Context, e store.Entry) error {
	f.puts.Add(1)
	if f.failWrites.Load() {
		return errFlaky
	}
	return f.Store.Put(ctx, e)
}

// RecordBans fails as a whole while failWrites is set; otherwise it counts
// the entries it writes in puts.
func (f *flakyStore) RecordBans(ctx context.Context, w time.Duration, bans []store.AutoBan) error {
	f.banWrites.Add(1)
	if f.failWrites.Load() {
		return errFlaky
	}
	counted := make([]store.AutoBan, len(bans))
	for i, b := range bans {
		counted[i] = b
		counted[i].Entry = func(h store.History) (store.Entry, bool) {
			e, ok := b.Entry(h)
			if ok {
				f.puts.Add(1)
			}
			return e, ok
		}
	}
	return f.Store.RecordBans(ctx, w, counted)
}

func (f *flakyStore) Delete(ctx context.Context, l store.List, p netip.Prefix) (store.Entry, bool, error) {
	if f.failWrites.Load() {
		return store.Entry{}, false, errFlaky
	}
	return f.Store.Delete(ctx, l, p)
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// fail is a suspicious event of weight 1 under testConfig.
func fail(src string) event.Event {
	return event.Event{Kind: event.RejectedByService, Source: mustAddr(src), Listener: "web",
		Service: "portal", Proto: "http", Reason: event.ReasonStatus, Detail: "401"}
}

func userFail(src, service, user string) event.Event {
	return event.Event{Kind: event.RejectedByService, Source: mustAddr(src), Listener: "sip",
		Service: service, Proto: "sip", Reason: event.ReasonInvalidCreds, User: user}
}

func success(src, service, user string) event.Event {
	return event.Event{Kind: event.Success, Source: mustAddr(src), Listener: "sip",
		Service: service, Proto: "sip", Reason: event.ReasonOK, User: user}
}

// emitN emits ev n times, stamping the clock's time, and waits for the
// store writes of the bans it made.
func (h *harness) emitN(ev event.Event, n int) {
	for range n {
		ev.Time = h.clock.Now()
		h.e.Emit(ev)
	}
	h.flush()
}

// flush waits for the ban writers.
func (h *harness) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.e.Flush(ctx); err != nil {
		panic("Flush: " + err.Error())
	}
}

func (h *harness) blacklisted(t testing.TB, p string) (store.Entry, bool) {
	t.Helper()
	h.flush()
	e, ok, err := h.st.Get(context.Background(), store.Blacklist, mustPrefix(p))
	if err != nil {
		t.Fatalf("store Get %s: %v", p, err)
	}
	return e, ok
}

func newJSONLogger(l *logBuf) *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// recordBan counts one ban of a at at in st, writing no entry, and returns
// the history with it.
func recordBan(ctx context.Context, st store.Store, a netip.Addr, at time.Time, window time.Duration) (store.History, error) {
	var h store.History
	err := st.RecordBans(ctx, window, []store.AutoBan{{Addr: a, At: at,
		Entry: func(x store.History) (store.Entry, bool) { h = x; return store.Entry{}, false }}})
	return h, err
}
