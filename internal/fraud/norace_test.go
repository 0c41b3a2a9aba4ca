//go:build !race

package fraud

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

// The 1M-entry measurements are built only without the race detector,
// whose instrumentation inflates memory and time (the logic is race-tested
// at smaller sizes elsewhere); scripts/test.sh runs them in its race-free
// step.

func TestAllowedAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		e := bigEngine(v6)
		e.wl.set(mustPrefix("10.0.0.0/8"), 0)
		e.guard.set(mustPrefix("10.1.2.3/32"), 0, false)
		var seen [2]bool
		for _, a := range append(probes(v6), bigHost(1, v6), bigHost(2, v6), mustAddr("::ffff:1.2.3.4"), mustAddr("10.1.2.3"), mustAddr("fe80::1%eth0"), netip.Addr{}) {
			seen[b2i(e.Allowed(a))] = true
			if n := testing.AllocsPerRun(10, func() { e.Allowed(a) }); n != 0 {
				t.Fatalf("Allowed(%s) allocates %v times", a, n)
			}
		}
		if !seen[0] || !seen[1] {
			t.Fatal("probes do not exercise both answers")
		}
		e.wl.remove(mustPrefix("10.0.0.0/8"))
		e.guard.remove(mustPrefix("10.1.2.3/32"))
	}
}

func TestBlacklistMemory(t *testing.T) {
	for _, fam := range []string{"v4", "v6"} {
		t.Run(fam, func(t *testing.T) {
			before := heapInUse()
			g := newGuard(rand.Uint64())
			exp := nanos(time.Now().Add(time.Hour))
			for i := range bigHosts {
				x := uint32(i) * 2654435761
				a := netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
				if fam == "v6" {
					a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(x >> 24), 13: byte(x >> 16), 14: byte(x >> 8), 15: byte(x)})
				}
				g.set(hostPrefix(a), exp, false)
			}
			after := heapInUse()
			runtime.KeepAlive(g)
			if g.size() != bigHosts {
				t.Fatalf("size %d", g.size())
			}
			grew := int64(after) - int64(before)
			t.Logf("%s: %d addresses take %.1f MB (%.1f bytes/address; filter and huge-page tables included)", fam, bigHosts, float64(grew)/1e6, float64(grew)/bigHosts)
			if grew > 100e6 {
				t.Errorf("%d addresses take %d bytes, more than 100 MB", bigHosts, grew)
			}
		})
	}
}

func TestSourceStateBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSources = 100_000
	var clock atomic.Int64
	clock.Store(t0.UnixNano())
	e, err := New(cfg, store.NewMemory(), Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	before := heapInUse()
	ev := event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonUnknownProtocol}
	for i := range 1_000_000 {
		x := uint32(i)
		ev.Source = netip.AddrFrom4([4]byte{100, byte(x >> 16), byte(x >> 8), byte(x)})
		if i%3 == 0 {
			ev.Source = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(x >> 16), 14: byte(x >> 8), 15: byte(x)})
		}
		e.Emit(ev)
		if i%20_000 == 0 {
			clock.Add(int64(time.Second))
		}
	}
	after := heapInUse()
	st := e.Stats()
	if st.Sources > cfg.MaxSources || st.Sources < cfg.MaxSources*9/10 {
		t.Errorf("Sources = %d with MaxSources %d", st.Sources, cfg.MaxSources)
	}
	if st.SourcesEvicted != 1_000_000-uint64(st.Sources) {
		t.Errorf("SourcesEvicted = %d, Sources = %d", st.SourcesEvicted, st.Sources)
	}
	grew := int64(after) - int64(before)
	per := float64(grew) / float64(st.Sources)
	t.Logf("%d sources take %.1f MB (%.0f bytes/source, slab capacity included)", st.Sources, float64(grew)/1e6, per)
	if per > 200 {
		t.Errorf("%.0f bytes per source", per)
	}
	runtime.KeepAlive(e)
}
