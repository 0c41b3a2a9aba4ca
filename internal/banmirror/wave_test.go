package banmirror

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/kernelbl"
	"github.com/pbxgate/pbxgate/internal/netnstest"
	"github.com/pbxgate/pbxgate/internal/store"
)

// countingSync passes calls on to a Sync and counts the prefixes added.
type countingSync struct {
	Sync
	mu    sync.Mutex
	added int
}

func (c *countingSync) Add(es ...kernelbl.Entry) error {
	err := c.Sync.Add(es...)
	c.mu.Lock()
	c.added += len(es)
	c.mu.Unlock()
	return err
}

func (c *countingSync) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.added
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Ban wave parameters: as in bench/fraud.sh's flood, where 1,000
// attackers cross the threshold within a few seconds.
const (
	waveSources   = 1000
	waveSpacing   = 5 * time.Millisecond // 200 bans a second
	waveThreshold = 10
	waveRing      = 10000 // fraud.recent_events' default
)

// BenchmarkBanWave bans waveSources distinct sources, one every
// waveSpacing, and reports the CPU time of the whole process per ban, from
// the first ban until every ban is in the Sync and one reconcile (as Run
// makes after a burst) has given them their stored expiries. Run it with
// -cpu 1 (pbxgate's GOMAXPROCS in bench/fraud.sh) and -benchtime 1x: one
// iteration is one wave. Sub-benchmarks:
//
//   - engine+fake: through a fraud engine on a bolt store (its evidence
//     from an event ring as full as the gateway's) into a Mirror with a
//     fake Sync: what the engine and the mirror cost;
//   - engine+kernel: the same into a real kernelbl.Sync in a network
//     namespace, with the kernel's work;
//   - mirror+kernel: the Mirror and the real Sync alone (OnBan called
//     directly, stored entries from a fake store): the kernel blacklist's
//     share without the store's noise.
func BenchmarkBanWave(b *testing.B) {
	b.Run("engine+fake", func(b *testing.B) { benchBanWave(b, nil, banWave) })
	b.Run("engine+kernel", func(b *testing.B) { benchBanWave(b, kernelSync(b), banWave) })
	b.Run("mirror+kernel", func(b *testing.B) { benchBanWave(b, kernelSync(b), mirrorWave) })
}

// kernelSync returns a Sync on a table in a new network namespace.
func kernelSync(b *testing.B) *kernelbl.Sync {
	netnstest.NeedPeers(b)
	ns := netnstest.NewNS(b)
	ks, err := kernelbl.New(kernelbl.Options{NetNS: ns.FD})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ks.Close() })
	if err := ks.Ensure(); err != nil {
		b.Fatal(err)
	}
	return ks
}

func benchBanWave(b *testing.B, ks *kernelbl.Sync, wave func(*testing.B, *kernelbl.Sync) (time.Duration, time.Duration)) {
	var cpu, wall time.Duration
	waves := 0
	for b.Loop() {
		b.StopTimer()
		c, w := wave(b, ks)
		cpu += c
		wall += w
		waves++
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(waves*waveSources), "cpu-µs/ban")
	b.ReportMetric(wall.Seconds()/float64(waves), "s/wave")
}

// waveSink returns the Sync of a wave: ks emptied, or a fake one when ks
// is nil; counted.
func waveSink(b *testing.B, ks *kernelbl.Sync) *countingSync {
	if ks == nil {
		return &countingSync{Sync: newFakeSync()}
	}
	if err := ks.Reconcile(nil); err != nil { // empty from the last wave
		b.Fatal(err)
	}
	return &countingSync{Sync: ks}
}

// waitAdded waits until cs was given n prefixes.
func waitAdded(b *testing.B, cs *countingSync, n int) {
	for deadline := time.Now().Add(time.Minute); cs.count() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("after a minute the mirror added %d of %d bans", cs.count(), n)
		}
	}
}

// mirrorWave runs one wave of OnBan calls into a Mirror on fresh state and
// returns the CPU time it took and how long it lasted.
func mirrorWave(b *testing.B, ks *kernelbl.Sync) (time.Duration, time.Duration) {
	cs := waveSink(b, ks)
	fs := &fakeStore{}
	mir, err := New(Options{Sync: cs, Entries: fs.entries, Settings: Settings{Resync: time.Minute, BanMax: 24 * time.Hour}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := mir.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { mir.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	cpu0, start := cpuTime(b), time.Now()
	tick := time.NewTicker(waveSpacing)
	for i := range waveSources {
		a := waveAddr(i)
		mir.OnBan(netip.PrefixFrom(a, 32))
		fs.ban(a.String(), time.Now().Add(30*time.Minute)) // what the ban writers store
		<-tick.C
	}
	tick.Stop()
	waitAdded(b, cs, waveSources)
	if err := mir.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	return cpuTime(b) - cpu0, time.Since(start)
}

// waveAddr is the source of attacker i, as in bench/fraudflood.
func waveAddr(i int) netip.Addr {
	n := i + 1
	return netip.AddrFrom4([4]byte{127, 2, byte(n >> 8), byte(n)})
}

// banWave runs one wave through a fraud engine on fresh state and returns
// the CPU time it took and how long it lasted.
func banWave(b *testing.B, ks *kernelbl.Sync) (time.Duration, time.Duration) {
	cs := waveSink(b, ks)
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ring := event.NewRing(waveRing)
	defer ring.Close()
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	var eng *fraud.Engine
	mir, err := New(Options{
		Sync:     cs,
		Entries:  func(ctx context.Context, l store.List) ([]store.Entry, error) { return eng.Entries(ctx, l) },
		Settings: Settings{Resync: time.Minute, BanMax: 24 * time.Hour},
		Log:      log,
	})
	if err != nil {
		b.Fatal(err)
	}
	eng, err = fraud.New(fraud.Config{
		Enabled: true, Threshold: waveThreshold, BanFor: 30 * time.Minute, BanMax: 24 * time.Hour,
		RecidiveWindow: 7 * 24 * time.Hour,
		KindWeights:    map[event.Kind]int{event.RejectedByGateway: 1, event.RejectedByService: 1},
		MaxSources:     1_000_000, NATWindow: time.Hour, NATMaxFactor: 100,
	}, st, fraud.Options{
		Log:    log,
		Recent: ring.Evidence,
		OnBan:  mir.OnBan,
		OnLift: mir.OnLift,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := eng.Load(ctx); err != nil {
		b.Fatal(err)
	}
	if err := mir.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { eng.Run(ctx) })
	wg.Go(func() { mir.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		eng.Close()
	}()

	emit := func(ev event.Event) {
		ring.Emit(ev)
		eng.Emit(ev)
	}
	// The ring as the gateway has it: users' successes between the
	// attackers' failures.
	user := func(i int) event.Event {
		return event.Event{Time: time.Now(), Kind: event.Success, Source: netip.AddrFrom4([4]byte{127, 0, 1, byte(i%20 + 1)}),
			Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonOK, User: fmt.Sprintf("legit%d", i%20), Detail: "200"}
	}
	attack := func(a netip.Addr) event.Event {
		return event.Event{Time: time.Now(), Kind: event.RejectedByService, Source: a,
			Listener: "web", Service: "portal", Proto: "http", Reason: event.ReasonStatus, User: "admin", Detail: "401"}
	}
	for i := range waveRing {
		if i%2 == 0 {
			emit(user(i))
		} else {
			emit(attack(waveAddr(i % waveSources)))
		}
	}

	cpu0, start := cpuTime(b), time.Now()
	tick := time.NewTicker(waveSpacing)
	for i := range waveSources {
		a := waveAddr(i)
		for n := 0; n < 5*waveThreshold && eng.Allowed(a); n++ {
			emit(attack(a))
			emit(user(n))
		}
		if eng.Allowed(a) {
			b.Fatalf("%v not banned", a)
		}
		<-tick.C
	}
	tick.Stop()
	if err := eng.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	// Every ban in the kernel, then the reconcile Run makes after a burst.
	waitAdded(b, cs, waveSources)
	if err := mir.Reconcile(ctx); err != nil {
		b.Fatal(err)
	}
	return cpuTime(b) - cpu0, time.Since(start)
}
