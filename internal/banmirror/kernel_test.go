package banmirror

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/kernelbl"
	"github.com/pbxgate/pbxgate/internal/netnstest"
	"github.com/pbxgate/pbxgate/internal/store"
)

// TestKernelWithFraudEngine runs a real fraud engine (bolt store) and a
// real kernelbl.Sync in the server namespace of a lab: an automatic ban
// drops the source's UDP in the kernel within a second while the client's
// other address passes; an unban restores it; a whitelisted /32 inside a
// manually banned /24 still passes.
func TestKernelWithFraudEngine(t *testing.T) {
	netnstest.NeedPeers(t)
	l := netnstest.NewLab(t)
	srv := l.Serve(t)
	l.WaitReachable(t, srv, 30*time.Second)

	ks, err := kernelbl.New(kernelbl.Options{NetNS: l.Srv.FD})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ks.Close() })
	if err := ks.Ensure(); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })

	var eng *fraud.Engine
	met := NewMetrics(nil)
	mir, err := New(Options{
		Sync:     ks,
		Entries:  func(ctx context.Context, l store.List) ([]store.Entry, error) { return eng.Entries(ctx, l) },
		Settings: Settings{Resync: time.Minute, BanMax: time.Hour},
		Metrics:  met,
	})
	if err != nil {
		t.Fatal(err)
	}
	eng, err = fraud.New(fraud.Config{
		Enabled: true, Threshold: 5, BanFor: 10 * time.Minute, BanMax: time.Hour, RecidiveWindow: 24 * time.Hour,
		KindWeights: map[event.Kind]int{event.RejectedByGateway: 1},
		MaxSources:  1000, NATWindow: time.Hour, NATMaxFactor: 10,
	}, st, fraud.Options{Log: slog.New(slog.DiscardHandler), OnBan: mir.OnBan, OnLift: mir.OnLift})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := eng.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mir.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	engDone, mirDone := make(chan struct{}), make(chan struct{})
	go func() { eng.Run(ctx); close(engDone) }()
	go func() { mir.Run(ctx); close(mirDone) }()
	t.Cleanup(func() {
		cancel()
		<-mirDone
		<-engDone
		eng.Close()
	})

	// reaches polls until a datagram from src reaches the server (or,
	// with want false, stops reaching it) and reports how long it took.
	reaches := func(src, dst netip.Addr, want bool, limit time.Duration) (time.Duration, bool) {
		t.Helper()
		start := time.Now()
		for time.Since(start) < limit {
			if l.UDPOK(t, srv, src, dst, 100*time.Millisecond) == want {
				return time.Since(start), true
			}
		}
		return time.Since(start), false
	}
	emit := func(src netip.Addr, n int) {
		for range n {
			eng.Emit(event.Event{Time: time.Now(), Kind: event.RejectedByGateway, Source: src, Proto: "sip", Reason: event.ReasonScanner})
		}
	}

	// Automatic ban: the sixth refusal bans.
	emit(l.CliA4, 6)
	if eng.Allowed(l.CliA4) {
		t.Fatal("the engine did not ban after six refusals")
	}
	if took, ok := reaches(l.CliA4, l.Srv4, false, time.Second); !ok {
		t.Fatalf("banned source still reaches the server after %v", took)
	} else {
		t.Logf("automatic ban enforced in the kernel within %v", took)
	}
	if _, ok := reaches(l.CliB4, l.Srv4, true, 3*time.Second); !ok {
		t.Fatal("the client's other address is dropped too")
	}
	// The stored expiry replaces the provisional one soon after.
	if err := eng.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	// Unban restores it.
	if _, found, err := eng.Unban(ctx, netip.PrefixFrom(l.CliA4, 32)); err != nil || !found {
		t.Fatalf("unban: found=%v err=%v", found, err)
	}
	if took, ok := reaches(l.CliA4, l.Srv4, true, time.Second); !ok {
		t.Fatalf("unbanned source still dropped after %v", took)
	}

	// A whitelisted /32 inside a manually banned /24.
	before := value(t, met.reconcile)
	if _, err := eng.Allow(ctx, netip.PrefixFrom(l.CliB4, 32), 0, "office"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); value(t, met.reconcile) == before; {
		if time.Now().After(deadline) {
			t.Fatal("no reconcile within 5 s of an allow")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := eng.Ban(ctx, netip.MustParsePrefix("10.98.7.0/24"), time.Hour, "network"); err != nil {
		t.Fatal(err)
	}
	if took, ok := reaches(l.CliA4, l.Srv4, false, time.Second); !ok {
		t.Fatalf("source inside the banned /24 still reaches the server after %v", took)
	}
	if _, ok := reaches(l.CliB4, l.Srv4, true, 3*time.Second); !ok {
		t.Fatal("the whitelisted /32 inside the banned /24 is dropped")
	}
	// And after the next reconcile, still.
	before = value(t, met.reconcile)
	if err := mir.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if value(t, met.reconcile) != before+1 {
		t.Error("Reconcile did not count")
	}
	if _, ok := reaches(l.CliB4, l.Srv4, true, 3*time.Second); !ok {
		t.Fatal("the whitelisted /32 is dropped after a reconcile")
	}
	if _, ok := reaches(l.CliA4, l.Srv4, false, time.Second); !ok {
		t.Fatal("the /24 ban was lost by a reconcile")
	}
	if got := value(t, met.up); got != 1 {
		t.Errorf("up = %v", got)
	}
}
