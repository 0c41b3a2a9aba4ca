package fraud

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

func TestEvictionUnderPressure(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSources = 1000
	h := newHarness(t, cfg)
	attacker := "203.0.113.66"
	const flood = 100_000
	// Ten attacker events spread over 50 s, each behind 10,000 spoofed
	// one-event sources.
	for i := range flood {
		if i%(flood/10) == 0 {
			h.emitN(fail(attacker), 1)
			h.clock.Advance(5 * time.Second)
		}
		h.e.Emit(fail(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()))
	}
	st := h.e.Stats()
	if st.Sources > cfg.MaxSources {
		t.Errorf("Sources = %d > MaxSources %d", st.Sources, cfg.MaxSources)
	}
	if st.SourcesEvicted < flood-uint64(cfg.MaxSources) {
		t.Errorf("SourcesEvicted = %d", st.SourcesEvicted)
	}
	if info, _ := h.e.Inspect(bg, mustAddr(attacker)); info.Score != 10 {
		t.Fatalf("attacker's score %d after the flood, want 10", info.Score)
	}
	h.emitN(fail(attacker), 1)
	if h.e.Allowed(mustAddr(attacker)) {
		t.Fatal("attacker's 11th event did not ban it")
	}
	if st := h.e.Stats(); st.AutoBans != 1 {
		t.Errorf("AutoBans = %d: a flood source was banned", st.AutoBans)
	}
}

func TestSweepDropsIdleSources(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSources = 5000
	h := newHarness(t, cfg)
	for i := range 3000 {
		h.e.Emit(fail(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()))
	}
	h.clock.Advance(30 * time.Second)
	h.emitN(fail("192.0.2.1"), 3)
	h.clock.Advance(31 * time.Second)
	for range 60 { // the sweep visits every state within a window's worth of seconds
		h.e.sweep(bg)
	}
	if n := h.e.Stats().Sources; n != 1 {
		t.Fatalf("Sources = %d after the sweep, want the 1 active", n)
	}
	// A lowered MaxSources trims at the sweep.
	for i := range 3000 {
		h.e.Emit(fail(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}).String()))
	}
	cfg.MaxSources = 1000
	if err := h.e.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.e.sweep(bg)
	if n := h.e.Stats().Sources; n > 1000 {
		t.Errorf("Sources = %d after lowering MaxSources to 1000", n)
	}
}

func TestLoadAfterRestart(t *testing.T) {
	st := store.NewMemory()
	defer st.Close()
	clock := newClock()
	now := clock.Now()
	put := func(l store.List, p string, exp time.Time) {
		t.Helper()
		if err := st.Put(bg, store.Entry{List: l, Prefix: mustPrefix(p), Origin: store.Auto, Created: now.Add(-time.Hour), Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	put(store.Blacklist, "192.0.2.1/32", now.Add(time.Hour))
	put(store.Blacklist, "192.0.2.2/32", now.Add(-time.Second)) // expired while down
	put(store.Blacklist, "2001:db8::/32", time.Time{})
	put(store.Blacklist, "198.51.100.0/24", now) // expires exactly now
	put(store.Whitelist, "2001:db8:5::/48", time.Time{})
	put(store.Whitelist, "203.0.113.0/24", now.Add(-time.Minute)) // expired
	put(store.Blacklist, "203.0.113.9/32", time.Time{})

	// A previous run; its in-memory state is gone.
	log := &logBuf{}
	e, err := New(testConfig(), st, Options{Now: clock.Now, Log: newJSONLogger(log)})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Load(bg); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"192.0.2.1": false, "192.0.2.2": true, "2001:db8:1::1": false, "2001:db8:5::1": true,
		"198.51.100.1": true, "203.0.113.9": false, "192.0.2.3": true,
	} {
		if got := e.Allowed(mustAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
	for _, k := range []struct {
		l store.List
		p string
	}{{store.Blacklist, "192.0.2.2/32"}, {store.Blacklist, "198.51.100.0/24"}, {store.Whitelist, "203.0.113.0/24"}} {
		if _, ok, _ := st.Get(bg, k.l, mustPrefix(k.p)); ok {
			t.Errorf("expired %s %s not deleted", k.l, k.p)
		}
	}
	if n := len(log.lines(t, "source unbanned")); n != 2 {
		t.Errorf("%d unban lines, want 2", n)
	}
	if s := e.Stats(); s.Blacklisted != 3 || s.Whitelisted != 1 {
		t.Errorf("stats %+v", s)
	}
	// Load again replaces memory with the store.
	st.Delete(bg, store.Blacklist, mustPrefix("192.0.2.1/32"))
	if err := e.Load(bg); err != nil {
		t.Fatal(err)
	}
	if !e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("second Load kept a deleted entry")
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &watchStore{Memory: store.NewMemory(), changes: make(chan store.Change)}
		defer st.Close()
		log := &logBuf{}
		var mu sync.Mutex
		var banned []netip.Prefix
		e, err := New(testConfig(), st, Options{Log: newJSONLogger(log), OnBan: func(p netip.Prefix) {
			mu.Lock()
			banned = append(banned, p)
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		// Ban history: one past the recidive window (pruned when Run
		// starts), one that falls out of it within the hour.
		recordBan(ctx, st, mustAddr("198.51.100.1"), time.Now().Add(-8*24*time.Hour), time.Hour)
		recordBan(ctx, st, mustAddr("198.51.100.2"), time.Now().Add(-7*24*time.Hour+30*time.Minute), time.Hour)
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		synctest.Wait()
		if n, _ := st.PruneHistory(ctx, time.Now().Add(-7*24*time.Hour)); n != 0 {
			t.Errorf("Run did not prune at start: %d more pruned", n)
		}

		if _, err := e.Ban(ctx, mustPrefix("192.0.2.0/24"), 5*time.Second, ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5*time.Second + 500*time.Millisecond)
		synctest.Wait()
		if !e.Allowed(mustAddr("192.0.2.1")) {
			t.Error("still refused after expiry")
		}
		if _, ok, _ := st.Get(ctx, store.Blacklist, mustPrefix("192.0.2.0/24")); ok {
			t.Error("Run did not delete the expired entry")
		}
		if lines := log.lines(t, "source unbanned"); len(lines) != 1 || lines[0]["reason"] != "expired" {
			t.Errorf("unban lines %v", lines)
		}

		// Changes announced by another node apply.
		st.changes <- store.Change{Entry: store.Entry{List: store.Blacklist, Prefix: mustPrefix("203.0.113.0/24")}}
		st.changes <- store.Change{Entry: store.Entry{List: store.Whitelist, Prefix: mustPrefix("203.0.113.7/32")}}
		synctest.Wait()
		if e.Allowed(mustAddr("203.0.113.1")) || !e.Allowed(mustAddr("203.0.113.7")) {
			t.Error("watched changes not applied")
		}
		st.changes <- store.Change{Entry: store.Entry{List: store.Blacklist, Prefix: mustPrefix("203.0.113.0/24")}, Deleted: true}
		synctest.Wait()
		if !e.Allowed(mustAddr("203.0.113.1")) {
			t.Error("watched delete not applied")
		}
		mu.Lock()
		if len(banned) != 2 || banned[1] != mustPrefix("203.0.113.0/24") {
			t.Errorf("OnBan calls %v", banned)
		}
		mu.Unlock()

		// The hourly prune forgets ban history older than RecidiveWindow.
		time.Sleep(time.Hour)
		synctest.Wait()
		if h, _ := recordBan(ctx, st, mustAddr("198.51.100.2"), time.Now(), 30*24*time.Hour); h.Bans != 1 {
			t.Errorf("history not pruned within the hour: %+v", h)
		}

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		// Close also stops Run.
		done2 := make(chan error, 1)
		go func() { done2 <- e.Run(context.Background()) }()
		synctest.Wait()
		e.Close()
		if err := <-done2; err != nil {
			t.Errorf("Run after Close = %v", err)
		}
	})
}

// watchStore is a memory store whose Watch delivers changes from a channel,
// as a shared backend would.
type watchStore struct {
	*store.Memory
	changes chan store.Change
}

func (w *watchStore) Watch(ctx context.Context, fn func(store.Change)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-w.changes:
			fn(c)
		}
	}
}

func TestConcurrency(t *testing.T) {
	h := newHarness(t, testConfig(), func(o *Options) { o.Now = nil })
	const (
		workers = 8
		events  = 3000
	)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range events {
				a := netip.AddrFrom4([4]byte{10, byte(w), byte(i % 50), 1})
				ev := fail(a.String())
				if i%7 == 0 {
					ev = success(a.String(), "pbx", fmt.Sprint(i%5))
				}
				h.e.Emit(ev)
				h.e.Allowed(a)
			}
		})
	}
	wg.Go(func() {
		for i := range 200 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % workers), byte(i % 50), 0}), 24)
			h.e.Ban(bg, p, time.Minute, "")
			h.e.Inspect(bg, p.Addr())
			h.e.Unban(bg, p)
			h.e.Stats()
		}
	})
	wg.Go(func() {
		for i := range 200 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % workers), byte(i % 50), 1}), 32)
			h.e.Allow(bg, p, 0, "")
			h.e.Disallow(bg, p)
			h.e.sweep(bg)
		}
	})
	wg.Wait()
	h.flush()
	st := h.e.Stats()
	if st.EventsSeen != workers*events || st.EventsCounted+st.EventsIgnored != st.EventsSeen {
		t.Errorf("stats do not add up: %+v", st)
	}
	if st.AutoBans == 0 {
		t.Error("no automatic ban under load")
	}
	// Memory and store agree at rest.
	bl, err := h.e.Entries(bg, store.Blacklist)
	if err != nil {
		t.Fatal(err)
	}
	if len(bl) != st.Blacklisted {
		t.Errorf("%d entries in the store, %d in memory", len(bl), st.Blacklisted)
	}
	if st.Whitelisted != 0 {
		t.Fatalf("Whitelisted = %d after every Allow was undone", st.Whitelisted)
	}
	for _, ent := range bl {
		if h.e.Allowed(ent.Prefix.Addr()) {
			t.Errorf("%s in the store but allowed", ent.Prefix)
		}
	}
}

func TestEventSinkInterface(t *testing.T) {
	var _ event.Sink = (*Engine)(nil)
}

func TestConcurrentBanOnce(t *testing.T) {
	h := newHarness(t, testConfig())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { h.emitN(fail("192.0.2.1"), 50) })
	}
	wg.Wait()
	if st := h.e.Stats(); st.AutoBans != 1 || st.EventsCounted+st.EventsIgnored != 400 {
		t.Errorf("stats %+v", st)
	}
	if n := len(h.log.lines(t, "source banned")); n != 1 {
		t.Errorf("%d ban lines", n)
	}
	if n := h.st.puts.Load(); n != 1 {
		t.Errorf("%d store writes for one ban", n)
	}
	if !h.e.Allowed(netip.Addr{}) {
		t.Error("the zero address is refused")
	}
}

// TestBanBurstIsDurable bans 1000 sources at once on a real bolt store:
// every ban must reach the disk (the ban writers batch them), none may be
// lost to the store's write timeout.
func TestBanBurstIsDurable(t *testing.T) {
	st, err := store.OpenBolt(t.TempDir()+"/state.db", store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := New(testConfig(), st, Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	const sources = 1000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < sources; i += 8 {
				ev := fail(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String())
				for range 11 {
					e.Emit(ev)
				}
			}
		})
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(bg, 60*time.Second)
	defer cancel()
	if err := e.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	n, err := st.Count(bg, store.Blacklist)
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); n != sources || s.AutoBans != sources || s.StoreErrors != 0 {
		t.Errorf("%d bans on disk, stats %+v; want %d and no store error", n, s, sources)
	}
}
