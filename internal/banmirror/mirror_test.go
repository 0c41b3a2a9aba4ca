package banmirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/kernelbl"
	"github.com/pbxgate/pbxgate/internal/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

// value reads a counter's or gauge's value.
func value(t testing.TB, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("%v is no counter or gauge", c.Desc())
	return 0
}

// fakeSync records calls and keeps the wanted list the way kernelbl.Sync
// does: Add sets, Remove deletes, Reconcile replaces.
type fakeSync struct {
	mu    sync.Mutex
	want  map[netip.Prefix]time.Time
	calls []string
	fail  map[string]int // op -> failures left
}

func newFakeSync() *fakeSync {
	return &fakeSync{want: map[netip.Prefix]time.Time{}, fail: map[string]int{}}
}

func (f *fakeSync) failing(op string) error {
	if f.fail[op] > 0 {
		f.fail[op]--
		return errors.New("netlink: operation not permitted")
	}
	return nil
}

func (f *fakeSync) Add(es ...kernelbl.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("add %d", len(es)))
	if err := f.failing("add"); err != nil {
		return err
	}
	for _, e := range es {
		f.want[e.Prefix] = e.Expires
	}
	return nil
}

func (f *fakeSync) Remove(ps ...netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("remove %d", len(ps)))
	if err := f.failing("remove"); err != nil {
		return err
	}
	for _, p := range ps {
		delete(f.want, p)
	}
	return nil
}

func (f *fakeSync) Reconcile(es []kernelbl.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("reconcile %d", len(es)))
	if err := f.failing("reconcile"); err != nil {
		return err
	}
	f.want = map[netip.Prefix]time.Time{}
	for _, e := range es {
		f.want[e.Prefix] = e.Expires
	}
	return nil
}

// takeCalls returns the calls so far and forgets them.
func (f *fakeSync) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeSync) wanted() map[netip.Prefix]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.want)
}

// fakeStore is the engine's Entries.
type fakeStore struct {
	mu     sync.Mutex
	bl, wl []store.Entry
	err    error
}

func (s *fakeStore) entries(_ context.Context, l store.List) ([]store.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if l == store.Blacklist {
		return slices.Clone(s.bl), nil
	}
	return slices.Clone(s.wl), nil
}

func (s *fakeStore) ban(p string, exp time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bl = append(s.bl, store.Entry{List: store.Blacklist, Prefix: pfx(p), Expires: exp})
}

func (s *fakeStore) allow(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wl = append(s.wl, store.Entry{List: store.Whitelist, Prefix: pfx(p)})
}

func (s *fakeStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// syncBuf is a log destination safe for concurrent use.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// rig is a Mirror on fakes, inside a synctest bubble.
type rig struct {
	m     *Mirror
	sync  *fakeSync
	store *fakeStore
	met   *Metrics
	log   *syncBuf
	stop  func()
}

const banMax = 24 * time.Hour

func newRig(t testing.TB, mod func(*Options)) *rig {
	t.Helper()
	r := &rig{sync: newFakeSync(), store: &fakeStore{}, log: &syncBuf{}, met: NewMetrics(prometheus.NewRegistry())}
	o := Options{
		Sync:     r.sync,
		Entries:  r.store.entries,
		Settings: Settings{Resync: time.Minute, BanMax: banMax},
		Metrics:  r.met,
		Log:      slog.New(slog.NewTextHandler(r.log, nil)),
	}
	if mod != nil {
		mod(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.m = m
	return r
}

// run reconciles once and starts Run; it is stopped at cleanup.
func (r *rig) run(t *testing.T) {
	t.Helper()
	r.reconcile(t)
	r.start(t)
}

// reconcile runs a first Reconcile and forgets its calls.
func (r *rig) reconcile(t *testing.T) {
	t.Helper()
	if err := r.m.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.sync.takeCalls()
}

// start starts Run. Bans queued before it are drained in one batch (once
// Run runs, the test's OnBan calls race with its drains).
func (r *rig) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		r.m.Run(ctx)
		close(done)
	}()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
}

func TestNewNeedsSyncAndEntries(t *testing.T) {
	if _, err := New(Options{Entries: (&fakeStore{}).entries}); !errors.Is(err, ErrInvalid) {
		t.Errorf("without Sync: %v", err)
	}
	if _, err := New(Options{Sync: newFakeSync()}); !errors.Is(err, ErrInvalid) {
		t.Errorf("without Entries: %v", err)
	}
}

// TestBatchAndProvisionalExpiry: bans queued together reach the kernel in
// one Add, each with the provisional expiry now + BanMax; a reconcile
// Settle later gives them their stored expiry, and keeps an automatic ban
// the store does not list yet.
func TestBatchAndProvisionalExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.reconcile(t)
		start := time.Now()
		for i := range 100 {
			r.m.OnBan(pfx(fmt.Sprintf("192.0.2.%d", i)))
		}
		r.m.OnBan(pfx("192.0.2.7")) // coalesced
		r.start(t)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"add 100"}) {
			t.Fatalf("calls %v, want one add of 100", c)
		}
		w := r.sync.wanted()
		if len(w) != 100 || !w[pfx("192.0.2.7")].Equal(start.Add(banMax)) {
			t.Fatalf("kernel wants %d prefixes, 192.0.2.7 until %v; want 100 until now+%v", len(w), w[pfx("192.0.2.7")], banMax)
		}
		if got := value(t, r.met.adds); got != 100 {
			t.Errorf("adds_total %v, want 100", got)
		}

		// The ban writers store every ban but .99 with its real expiry.
		real := start.Add(30 * time.Minute)
		for i := range 99 {
			r.store.ban(fmt.Sprintf("192.0.2.%d", i), real)
		}
		time.Sleep(defaultSettle - time.Millisecond)
		synctest.Wait()
		if c := r.sync.takeCalls(); len(c) != 0 {
			t.Fatalf("calls before Settle passed: %v", c)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"reconcile 100"}) {
			t.Fatalf("calls %v, want a reconcile of 100 Settle after the burst", c)
		}
		w = r.sync.wanted()
		if !w[pfx("192.0.2.7")].Equal(real) {
			t.Errorf("192.0.2.7 until %v, want the stored %v", w[pfx("192.0.2.7")], real)
		}
		if !w[pfx("192.0.2.99")].Equal(start.Add(banMax)) {
			t.Errorf("unstored ban 192.0.2.99 until %v, want kept until now+%v", w[pfx("192.0.2.99")], banMax)
		}
		if got := value(t, r.met.prefixes.WithLabelValues("ipv4")); got != 100 {
			t.Errorf("prefixes{ipv4} %v, want 100", got)
		}
	})
}

// TestBurstKeepsFirstDeadline: bans arriving steadily do not push the
// early reconcile back: it comes Settle after the first.
func TestBurstKeepsFirstDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.run(t)
		start := time.Now()
		var first time.Duration
		for i := range 30 {
			r.m.OnBan(pfx(fmt.Sprintf("198.51.100.%d", i)))
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			for _, c := range r.sync.takeCalls() {
				if strings.HasPrefix(c, "reconcile") && first == 0 {
					first = time.Since(start)
				}
			}
		}
		if first < defaultSettle || first > defaultSettle+100*time.Millisecond {
			t.Errorf("first reconcile %v after the first ban, want %v", first, defaultSettle)
		}
	})
}

// TestLiftRemovesAtOnce: a lift removes the prefix in the next drain and a
// reconcile follows a tenth of Settle later; a ban and a lift of the same
// prefix queued together leave only the lift.
func TestLiftRemovesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.store.ban("203.0.113.0/24", time.Time{})
		r.run(t)
		if _, ok := r.sync.wanted()[pfx("203.0.113.0/24")]; !ok {
			t.Fatal("stored ban not reconciled at start")
		}
		r.store.mu.Lock()
		r.store.bl = nil // the operator's unban deleted it
		r.store.mu.Unlock()
		r.m.OnLift(pfx("203.0.113.0/24"))
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"remove 1"}) {
			t.Fatalf("calls %v, want one remove", c)
		}
		if _, ok := r.sync.wanted()[pfx("203.0.113.0/24")]; ok {
			t.Fatal("lifted prefix still wanted")
		}
		time.Sleep(defaultSettle / 10)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"reconcile 0"}) {
			t.Fatalf("calls %v, want a reconcile Settle/10 after the lift", c)
		}

		r.stop()
		r.m.OnBan(pfx("203.0.113.9"))
		r.m.OnLift(pfx("203.0.113.9"))
		r.start(t)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"remove 1"}) {
			t.Fatalf("ban then lift: calls %v, want only the remove", c)
		}
		// The lifted provisional ban is not brought back by a reconcile.
		time.Sleep(time.Minute)
		synctest.Wait()
		if w := r.sync.wanted(); len(w) != 0 {
			t.Errorf("after reconcile the kernel wants %v", w)
		}
		if got := value(t, r.met.removes); got != 2 {
			t.Errorf("removes_total %v, want 2", got)
		}
	})
}

// TestSubtractWhitelistAndTrusted: neither a reconcile nor a provisional
// add ever puts a whitelisted or trusted address in the kernel.
func TestSubtractWhitelistAndTrusted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(o *Options) { o.Trusted = []netip.Prefix{pfx("10.0.0.128/25")} })
		r.store.ban("10.0.0.0/24", time.Time{})
		r.store.allow("10.0.0.3")
		r.store.allow("2001:db8::/64")
		r.run(t)
		covered := func(a string) bool {
			for p := range r.sync.wanted() {
				if p.Contains(netip.MustParseAddr(a)) {
					return true
				}
			}
			return false
		}
		for a, want := range map[string]bool{"10.0.0.2": true, "10.0.0.3": false, "10.0.0.4": true, "10.0.0.127": true, "10.0.0.128": false, "10.0.0.255": false} {
			if got := covered(a); got != want {
				t.Errorf("after reconcile: %s banned=%v, want %v", a, got, want)
			}
		}
		// Provisional adds are cut too.
		r.m.OnBan(pfx("2001:db8::/48"))
		r.m.OnBan(pfx("10.0.0.128/26"))
		synctest.Wait()
		for a, want := range map[string]bool{"2001:db8::1": false, "2001:db8:0:1::1": true, "10.0.0.130": false} {
			if got := covered(a); got != want {
				t.Errorf("after provisional add: %s banned=%v, want %v", a, got, want)
			}
		}
		// A trusted network added at reload is cut at the next reconcile.
		r.m.Reconfigure(Settings{Resync: time.Minute, BanMax: banMax, Trusted: []netip.Prefix{pfx("10.0.0.0/26")}})
		time.Sleep(defaultSettle / 10)
		synctest.Wait()
		for a, want := range map[string]bool{"10.0.0.2": false, "10.0.0.64": true, "10.0.0.130": true} {
			if got := covered(a); got != want {
				t.Errorf("after reload: %s banned=%v, want %v", a, got, want)
			}
		}
	})
}

// TestQueueFull: beyond QueueSize distinct prefixes the queue drops and
// counts; a reconcile soon after brings the dropped bans from the store.
func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, func(o *Options) { o.QueueSize = 4 })
		r.reconcile(t)
		for i := range 10 {
			p := fmt.Sprintf("192.0.2.%d", i)
			r.store.ban(p, time.Now().Add(time.Hour))
			r.m.OnBan(pfx(p))
		}
		r.m.OnBan(pfx("192.0.2.0")) // already queued: not a drop
		r.start(t)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"add 4"}) {
			t.Fatalf("calls %v, want add 4", c)
		}
		if got := value(t, r.met.drops); got != 6 {
			t.Errorf("queue_dropped_total %v, want 6", got)
		}
		time.Sleep(defaultSettle / 10)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"reconcile 10"}) {
			t.Fatalf("calls %v, want a reconcile of all 10 soon after the overflow", c)
		}
		// Lifts have room of their own: with the queue full of bans,
		// four more lifts still fit.
		r.stop()
		r.sync.takeCalls()
		for i := range 4 {
			r.m.OnBan(pfx(fmt.Sprintf("198.51.100.%d", i)))
		}
		for i := range 5 {
			r.m.OnLift(pfx(fmt.Sprintf("192.0.2.%d", i)))
		}
		r.start(t)
		synctest.Wait()
		c := r.sync.takeCalls()
		if len(c) < 2 || !slices.Contains(c, "remove 4") || !slices.Contains(c, "add 4") {
			t.Errorf("calls %v, want remove 4 and add 4", c)
		}
		if got := value(t, r.met.drops); got != 7 {
			t.Errorf("queue_dropped_total %v, want 7", got)
		}
	})
}

// TestRetryAfterErrors: a failing reconcile is retried with backoff
// (1 s, 2 s, ...), logged once for the streak and once on recovery; the
// up gauge follows. A failed add is repaired by a reconcile.
func TestRetryAfterErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.run(t)
		if got := value(t, r.met.up); got != 1 {
			t.Fatalf("up %v after the first reconcile", got)
		}
		r.sync.mu.Lock()
		r.sync.fail["add"] = 1
		r.sync.fail["reconcile"] = 3
		r.sync.mu.Unlock()
		r.store.ban("192.0.2.1", time.Time{})
		r.m.OnBan(pfx("192.0.2.1"))
		synctest.Wait()
		if got := value(t, r.met.up); got != 0 {
			t.Errorf("up %v after a failed add", got)
		}
		start := time.Now()
		var at []time.Duration
		for range 100 {
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
			for _, c := range r.sync.takeCalls() {
				if strings.HasPrefix(c, "reconcile") {
					at = append(at, time.Since(start).Round(100*time.Millisecond))
				}
			}
			if len(at) == 4 {
				break
			}
		}
		// Settle/10 after the failed add, then 1 s, 2 s, 4 s after each
		// failed try.
		want := []time.Duration{200 * time.Millisecond, 1200 * time.Millisecond, 3200 * time.Millisecond, 7200 * time.Millisecond}
		if !slices.Equal(at, want) {
			t.Errorf("reconciles at %v, want %v", at, want)
		}
		if _, ok := r.sync.wanted()[pfx("192.0.2.1")]; !ok {
			t.Error("the failed add was not repaired")
		}
		if got := value(t, r.met.errors.WithLabelValues(opReconcile)); got != 3 {
			t.Errorf("errors{reconcile} %v, want 3", got)
		}
		if got := value(t, r.met.errors.WithLabelValues(opAdd)); got != 1 {
			t.Errorf("errors{add} %v, want 1", got)
		}
		if got := value(t, r.met.up); got != 1 {
			t.Errorf("up %v after recovery", got)
		}
		logs := r.log.String()
		if n := strings.Count(logs, "kernel blacklist update failed"); n != 1 {
			t.Errorf("%d failure lines for one streak, want 1:\n%s", n, logs)
		}
		if !strings.Contains(logs, "kernel blacklist updates work again") || !strings.Contains(logs, "failures=4") {
			t.Errorf("no recovery line with the count:\n%s", logs)
		}
		// Back to the normal period.
		time.Sleep(time.Minute + time.Millisecond)
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"reconcile 1"}) {
			t.Errorf("calls %v a minute after recovery, want one reconcile", c)
		}
	})
}

// TestStoreErrorKeepsKernel: when the store cannot be read the kernel is
// left as it is (no reconcile with an empty list).
func TestStoreErrorKeepsKernel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.store.ban("192.0.2.1", time.Time{})
		r.run(t)
		r.store.setErr(errors.New("bolt: database not open"))
		time.Sleep(time.Minute)
		synctest.Wait()
		if c := r.sync.takeCalls(); len(c) != 0 {
			t.Errorf("calls %v while the store fails, want none", c)
		}
		if _, ok := r.sync.wanted()[pfx("192.0.2.1")]; !ok {
			t.Error("ban lost while the store failed")
		}
		if !strings.Contains(r.log.String(), "list the blacklist") {
			t.Errorf("log does not say what failed:\n%s", r.log.String())
		}
	})
}

// TestResyncPeriod: reconciles every Resync; Reconfigure changes it.
func TestResyncPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.run(t)
		count := func(d time.Duration) int {
			time.Sleep(d)
			synctest.Wait()
			return len(r.sync.takeCalls())
		}
		if n := count(3*time.Minute + time.Millisecond); n != 3 {
			t.Errorf("%d reconciles in 3 minutes, want 3", n)
		}
		r.m.Reconfigure(Settings{Resync: 10 * time.Second})
		if n := count(time.Second); n != 1 { // the reload's own reconcile
			t.Errorf("%d reconciles right after reload, want 1", n)
		}
		if n := count(30 * time.Second); n != 3 {
			t.Errorf("%d reconciles in 30 s at resync 10s, want 3", n)
		}
	})
}

// TestRunReconcilesFirst: Run without an earlier Reconcile reconciles at
// once; queued bans are applied when Run stops.
func TestRunReconcilesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, nil)
		r.store.ban("192.0.2.1", time.Time{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.m.Run(ctx); close(done) }()
		synctest.Wait()
		if c := r.sync.takeCalls(); !slices.Equal(c, []string{"reconcile 1"}) {
			t.Fatalf("calls %v, want a reconcile at once", c)
		}
		if got := value(t, r.met.lastOK); got != float64(time.Now().Unix()) {
			t.Errorf("last reconcile timestamp %v, want %v", got, time.Now().Unix())
		}
		cancel()
		r.m.OnBan(pfx("192.0.2.2"))
		<-done
		if _, ok := r.sync.wanted()[pfx("192.0.2.2")]; !ok {
			t.Error("ban queued at stop was not applied")
		}
	})
}

// TestOnBanDoesNotAllocate: the hot path allocates nothing once the queue
// holds the prefix, and nothing for invalid input.
func TestOnBanDoesNotAllocate(t *testing.T) {
	r := newRig(t, nil)
	p := pfx("192.0.2.1")
	r.m.OnBan(p)
	if n := testing.AllocsPerRun(1000, func() { r.m.OnBan(p) }); n != 0 {
		t.Errorf("OnBan of a queued prefix: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() { r.m.OnLift(netip.Prefix{}) }); n != 0 {
		t.Errorf("OnLift of an invalid prefix: %v allocs", n)
	}
}

func BenchmarkOnBan(b *testing.B) {
	r := newRig(b, nil)
	ps := make([]netip.Prefix, 1024)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 32)
	}
	i := 0
	for b.Loop() {
		r.m.OnBan(ps[i%len(ps)])
		i++
	}
}
