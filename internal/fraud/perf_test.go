package fraud

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

const (
	bigHosts = 1_000_000
	bigNets  = 100_000
)

// bigEngine returns an engine whose guard holds 1M single addresses (half
// of them with an expiry) and 100k networks of one family, built once per
// family.
func bigEngine(v6 bool) *Engine {
	if v6 {
		return bigEngine6()
	}
	return bigEngine4()
}

var (
	bigEngine4 = sync.OnceValue(func() *Engine { return buildBig(false) })
	bigEngine6 = sync.OnceValue(func() *Engine { return buildBig(true) })
)

// bigHost returns the i-th listed address of a family.
func bigHost(i int, v6 bool) netip.Addr {
	x := uint32(i) * 2654435761 // distinct, scattered
	if v6 {
		y := uint32(i) * 0x9e3779b1
		return netip.AddrFrom16([16]byte{0x20, 0x01, byte(y >> 24), byte(y >> 16), 4: byte(y >> 8), 5: byte(y), 8: 0x02, 12: byte(x >> 24), 13: byte(x >> 16), 14: byte(x >> 8), 15: byte(x)})
	}
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

func buildBig(v6 bool) *Engine {
	e, err := New(testConfig(), store.NewMemory(), Options{})
	if err != nil {
		panic(err)
	}
	exp := nanos(time.Now().Add(time.Hour))
	for i := range bigHosts {
		e.guard.set(hostPrefix(bigHost(i, v6)), exp*int64(i&1), false)
	}
	r := rand.New(rand.NewPCG(1, 2))
	t := e.guard.cidr.Load().Clone()
	for range bigNets {
		x := r.Uint64()
		if v6 {
			t.Insert(netip.PrefixFrom(netip.AddrFrom16([16]byte{0x2a, 0x02, byte(x >> 8), byte(x >> 16), byte(x >> 24), byte(x >> 32)}), 48), exp)
		} else {
			t.Insert(netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), 0}), 24), exp)
		}
	}
	e.guard.cidr.Store(t)
	e.guard.nets.Store(int64(t.Size()))
	e.guard.rebuildFilter(true) // the networks bypassed set
	return e
}

// probes returns lookup addresses: a quarter listed hosts, the rest random
// addresses (for IPv6, inside the /16 that holds the listed networks).
func probes(v6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(3, 4))
	out := make([]netip.Addr, 4096)
	for i := range out {
		if i%4 == 0 {
			out[i] = bigHost(r.IntN(bigHosts), v6)
			continue
		}
		x, y := r.Uint64(), r.Uint64()
		if v6 {
			out[i] = netip.AddrFrom16([16]byte{0x2a, 0x02, byte(x >> 8), byte(x >> 16), byte(x >> 24), byte(x >> 32), byte(x >> 40), byte(x >> 48),
				byte(y), byte(y >> 8), byte(y >> 16), byte(y >> 24), byte(y >> 32), byte(y >> 40), byte(y >> 48), byte(y >> 56)})
		} else {
			out[i] = netip.AddrFrom4([4]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)})
		}
	}
	return out
}

// innocentProbes returns lookup addresses as ordinary traffic brings them:
// one in 64 a listed host, the rest random addresses of the family (IPv6
// anywhere in 2000::/3), which mostly nothing lists.
func innocentProbes(v6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(7, 8))
	out := make([]netip.Addr, 4096)
	for i := range out {
		if i%64 == 0 {
			out[i] = bigHost(r.IntN(bigHosts), v6)
			continue
		}
		x, y := r.Uint64(), r.Uint64()
		if v6 {
			var k [16]byte
			binary.BigEndian.PutUint64(k[:8], 0x2000<<48|x>>3)
			binary.BigEndian.PutUint64(k[8:], y)
			out[i] = netip.AddrFrom16(k)
		} else {
			out[i] = netip.AddrFrom4([4]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)})
		}
	}
	return out
}

func BenchmarkAllowed(b *testing.B) {
	for _, fam := range []string{"v4", "v6"} {
		e := bigEngine(fam == "v6")
		ps := probes(fam == "v6")
		innocent := innocentProbes(fam == "v6")
		b.Run(fam+"/innocent", func(b *testing.B) {
			n := 0
			for i := 0; b.Loop(); i++ {
				if e.Allowed(innocent[i&4095]) {
					n++
				}
			}
			_ = n
		})
		b.Run(fam, func(b *testing.B) {
			n := 0
			for i := 0; b.Loop(); i++ {
				if e.Allowed(ps[i&4095]) {
					n++
				}
			}
			_ = n
		})
		b.Run(fam+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(4096)
				for pb.Next() {
					e.Allowed(ps[i&4095])
					i++
				}
			})
		})
	}
	b.Run("v4/refused", func(b *testing.B) {
		e := bigEngine(false)
		a := bigHost(0, false) // listed forever
		for b.Loop() {
			if e.Allowed(a) {
				b.Fatal("allowed")
			}
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// heapInUse returns the bytes in use on the Go heap plus those that
// bigSlice mapped off it, after collecting garbage and letting the cleanups
// of dropped mappings run.
func heapInUse() uint64 {
	var m runtime.MemStats
	for range 2 {
		runtime.GC()
	}
	for i, last := 0, int64(-1); i < 20 && mappedBytes.Load() != last; i++ {
		last = mappedBytes.Load()
		runtime.GC()
		runtime.Gosched()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc + uint64(mappedBytes.Load())
}

// mixedEvents returns events from n sources, mostly IPv4, some with users.
func mixedEvents(n int) []event.Event {
	r := rand.New(rand.NewPCG(5, 6))
	evs := make([]event.Event, 4096)
	for i := range evs {
		x := uint32(r.IntN(n))
		a := netip.AddrFrom4([4]byte{10, byte(x >> 16), byte(x >> 8), byte(x)})
		if i%8 == 0 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: byte(x >> 16), 14: byte(x >> 8), 15: byte(x)})
		}
		evs[i] = event.Event{Kind: event.RejectedByService, Source: a, Service: "pbx", Reason: event.ReasonInvalidCreds}
		switch i % 16 {
		case 1:
			evs[i].User = fmt.Sprint(i % 7)
		case 2:
			evs[i].Kind, evs[i].User = event.Success, fmt.Sprint(i%7)
		case 3:
			evs[i].Kind = event.BackendUnreachable // weight 0
		}
	}
	return evs
}

// benchEngine counts without ever banning (a huge threshold), so the
// benchmark measures counting, not store writes.
func benchEngine(b *testing.B) *Engine {
	cfg := testConfig()
	cfg.Threshold = 1 << 30
	cfg.MaxSources = 100_000
	e, err := New(cfg, store.NewMemory(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e
}

func BenchmarkEmit(b *testing.B) {
	evs := mixedEvents(50_000)
	b.Run("serial", func(b *testing.B) {
		e := benchEngine(b)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e.Emit(evs[i&4095])
		}
	})
	b.Run("parallel", func(b *testing.B) {
		e := benchEngine(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(4096)
			for pb.Next() {
				e.Emit(evs[i&4095])
				i++
			}
		})
	})
	b.Run("flood", func(b *testing.B) { // every event a new source, MaxSources full
		e := benchEngine(b)
		b.ReportAllocs()
		ev := event.Event{Kind: event.RejectedByGateway, Reason: event.ReasonUnknownProtocol}
		for i := uint32(0); b.Loop(); i++ {
			ev.Source = netip.AddrFrom4([4]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
			e.Emit(ev)
		}
	})
}

func TestEmitAllocs(t *testing.T) {
	cfg := testConfig()
	cfg.Threshold = 1 << 30
	e, err := New(cfg, store.NewMemory(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	evs := mixedEvents(100)
	for _, ev := range evs {
		e.Emit(ev)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { e.Emit(evs[i&4095]); i++ }); n != 0 {
		t.Errorf("Emit of a known source allocates %v times", n)
	}
}

func TestSourceSize(t *testing.T) {
	if n := unsafe.Sizeof(source{}); n > 64 {
		t.Errorf("per-source state is %d bytes, the budget is 64", n)
	} else {
		t.Logf("per-source state: %d bytes (+ index map entry)", n)
	}
}
