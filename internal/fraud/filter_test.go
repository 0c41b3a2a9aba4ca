package fraud

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
)

func TestLevelOf(t *testing.T) {
	for _, c := range []struct {
		name      string
		fam, bits int
		want      int
	}{
		{"v4 /0 is wide", 0, 0, -1},
		{"v4 /7 is wide", 0, 7, -1},
		{"v4 /8", 0, 8, 0},
		{"v4 /15 widens to /8", 0, 15, 0},
		{"v4 /16", 0, 16, 1},
		{"v4 /23 widens to /16", 0, 23, 1},
		{"v4 /24", 0, 24, 2},
		{"v4 /31 widens to /24", 0, 31, 2},
		{"v6 /15 is wide", 1, 15, -1},
		{"v6 /16", 1, 16, 0},
		{"v6 /29 widens to /16", 1, 29, 0},
		{"v6 /32", 1, 32, 1},
		{"v6 /48", 1, 48, 2},
		{"v6 /56 widens to /48", 1, 56, 2},
		{"v6 /64", 1, 64, 3},
		{"v6 /127 widens to /64", 1, 127, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := levelOf(c.fam, c.bits); got != c.want {
				t.Errorf("levelOf(%d, %d) = %d, want %d", c.fam, c.bits, got, c.want)
			}
		})
	}
}

func TestFilterSize(t *testing.T) {
	for _, c := range []struct {
		name      string
		n         int64
		maxLog    int
		wantLog   int
		wantLimit int64
	}{
		{"empty: smallest", 0, filterMaxLog, filterMinLog, 8},
		{"1k entries: 16 bits each", 1024, filterMaxLog, 14, 2048},
		{"1M entries", 1 << 20, filterMaxLog, 24, 1 << 21},
		{"just over a power of two", 1<<20 + 1, filterMaxLog, 25, 1 << 22},
		{"capped: never outgrown", 1 << 20, 20, 20, 1<<63 - 1},
		{"cap below the minimum", 5, 1, filterMinLog, 1<<63 - 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			log, limit := filterSize(c.n, c.maxLog)
			if log != c.wantLog || limit != c.wantLimit {
				t.Errorf("filterSize(%d, %d) = %d, %d; want %d, %d", c.n, c.maxLog, log, limit, c.wantLog, c.wantLimit)
			}
		})
	}
}

// TestFilterDiscriminates checks that the filter answers most lookups of
// unlisted addresses alone (it may answer them all "maybe" and still be
// correct, but then it is useless) and never misses a listed one.
func TestFilterDiscriminates(t *testing.T) {
	for _, fam := range []string{"v4", "v6"} {
		t.Run(fam, func(t *testing.T) {
			v6 := fam == "v6"
			r := rand.New(rand.NewPCG(11, 12))
			randAddr := func() netip.Addr {
				if v6 {
					var k [16]byte
					for i := range k {
						k[i] = byte(r.Uint32())
					}
					k[0] = 0x20
					return netip.AddrFrom16(k)
				}
				return netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
			}
			g := newGuard(r.Uint64())
			listed := make(map[netip.Addr]bool)
			for range 50_000 {
				a := randAddr()
				listed[a] = true
				g.set(hostPrefix(a), 0, false)
			}
			bits := 24
			if v6 {
				bits = 48
			}
			for range 5_000 {
				p, _ := normPrefix(netip.PrefixFrom(randAddr(), bits))
				g.set(p, 0, false)
			}
			f := g.filter.Load()
			if f == nil {
				t.Fatal("no filter with 55k entries")
			}
			for a := range listed {
				if b, _ := g.blocked(a, func() int64 { return 0 }); !b {
					t.Fatalf("listed %s not blocked", a)
				}
			}
			const n = 20_000
			maybe := 0
			for range n {
				a := randAddr()
				hi, lo, w := addrKey(a)
				if f.mayHaveHost(hashKey(hi, lo, g.seed)) || f.mayHaveNet(w, famOf(a.Is4())) {
					maybe++
				}
			}
			// Between 8 and 16 bits an entry, two bits a key: 1.5–5% of
			// unlisted hosts pass the host bits, as many the net bits.
			t.Logf("%s: %.1f%% of random unlisted addresses pass the filter", fam, 100*float64(maybe)/n)
			if maybe > n/10 {
				t.Errorf("%d of %d random addresses pass the filter", maybe, n)
			}
		})
	}
}

// TestFilterWide checks that a network shorter than every level makes the
// family's lookups skip the net bits, and only that family's.
func TestFilterWide(t *testing.T) {
	g := newGuard(1)
	g.filterMin = 1
	g.set(mustPrefix("192.0.2.1/32"), 0, false)
	if g.filter.Load() == nil {
		t.Fatal("no filter")
	}
	g.set(mustPrefix("96.0.0.0/4"), 0, false)
	g.set(mustPrefix("2001:db8::/48"), 0, false)
	for _, c := range []struct {
		addr    string
		blocked bool
	}{
		{"100.1.2.3", true},
		{"192.0.2.1", true},
		{"192.0.2.2", false},
		{"2001:db8::1", true},
		{"2001:db9::1", false},
	} {
		t.Run(c.addr, func(t *testing.T) {
			if got, _ := g.blocked(mustAddr(c.addr), func() int64 { return 0 }); got != c.blocked {
				t.Errorf("blocked = %v, want %v", got, c.blocked)
			}
		})
	}
	f := g.filter.Load()
	if _, _, w := addrKey(mustAddr("10.0.0.1")); !f.mayHaveNet(w, 0) {
		t.Error("IPv4 lookups consult net bits despite a /4")
	}
	if f.wide[1].Load() {
		t.Error("an IPv4 /4 made IPv6 wide")
	}
}

// TestFilterRebuild checks when the guard builds, grows, cleans and drops
// its filter.
func TestFilterRebuild(t *testing.T) {
	g := newGuard(2)
	g.filterMin = 100
	host := func(i int) netip.Prefix {
		return hostPrefix(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	for i := range 99 {
		g.set(host(i), 0, false)
	}
	if g.filter.Load() != nil {
		t.Fatal("filter below filterMin")
	}
	g.set(host(99), 0, false)
	f := g.filter.Load()
	if f == nil {
		t.Fatal("no filter at filterMin")
	}
	// Outgrowing it (8 bits an entry) makes a bigger one.
	for i := 100; int64(i) <= f.hostCap; i++ {
		g.set(host(i), 0, false)
	}
	f2 := g.filter.Load()
	if f2 == f || len(f2.hosts) <= len(f.hosts) {
		t.Fatalf("filter not grown: %d words then %d", len(f.hosts), len(f2.hosts))
	}
	n := g.size()
	// Removing more than half the entries (plus filterMin) rebuilds it.
	i := 0
	for ; g.filter.Load() == f2 && i < n; i++ {
		g.remove(host(i))
	}
	if want := (n-i)/2 + 100; i < want {
		t.Errorf("rebuilt after %d removals of %d entries", i, n)
	}
	if g.filter.Load() == f2 {
		t.Fatal("filter never rebuilt")
	}
	if g.stale.Load() != 0 {
		t.Errorf("stale = %d after a rebuild", g.stale.Load())
	}
	// Below filterMin, a rebuild drops it.
	for ; i < n; i++ {
		g.remove(host(i))
	}
	g.rebuildFilter(true)
	if g.filter.Load() != nil {
		t.Errorf("filter kept with %d entries", g.size())
	}
}

// TestGuardConcurrentFilter runs readers against writers that make the
// filter be built, outgrown, rebuilt and replaced, and checks that a
// permanently listed address is never allowed meanwhile (run with -race).
func TestGuardConcurrentFilter(t *testing.T) {
	g := newGuard(3)
	g.filterMin = 64
	fixed := []netip.Prefix{mustPrefix("198.51.100.7/32"), mustPrefix("203.0.113.0/24"), mustPrefix("2001:db8::7/128"), mustPrefix("2001:db8:1::/48")}
	for _, p := range fixed {
		g.set(p, 0, false)
	}
	probes := []netip.Addr{mustAddr("198.51.100.7"), mustAddr("203.0.113.200"), mustAddr("2001:db8::7"), mustAddr("2001:db8:1:2::3")}
	var stop atomic.Bool
	var wrong atomic.Int64
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			now := func() int64 { return 0 }
			for i := r; !stop.Load(); i++ {
				if b, _ := g.blocked(probes[i%len(probes)], now); !b {
					wrong.Add(1)
				}
			}
		})
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	for round := range rounds {
		for i := range 3000 {
			g.set(hostPrefix(netip.AddrFrom4([4]byte{10, byte(round), byte(i >> 8), byte(i)})), 0, false)
			if i%4 == 0 {
				g.set(netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb9, byte(i >> 8), byte(i)}), 32+i%33), 0, false)
			}
		}
		for i := range 3000 {
			g.remove(hostPrefix(netip.AddrFrom4([4]byte{10, byte(round), byte(i >> 8), byte(i)})))
		}
		n := newGuard(g.seed)
		n.filterMin = g.filterMin
		for _, p := range fixed {
			n.set(p, 0, false)
		}
		for i := range 200 {
			n.set(hostPrefix(netip.AddrFrom4([4]byte{11, byte(round), byte(i >> 8), byte(i)})), 0, false)
		}
		g.replace(n)
	}
	stop.Store(true)
	wg.Wait()
	if w := wrong.Load(); w != 0 {
		t.Fatalf("a listed address was allowed %d times", w)
	}
	checkFilter(t, g, map[netip.Prefix]int64{fixed[0]: 0, fixed[1]: 0, fixed[2]: 0, fixed[3]: 0})
}

// TestAddrKey checks addrKey against the 16-byte form it stands for.
func TestAddrKey(t *testing.T) {
	for _, s := range []string{"0.0.0.0", "1.2.3.4", "255.255.255.255", "192.0.2.200", "::", "::1", "2001:db8:1:2:3:4:5:6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:0:1", "fe80::1%eth0"} {
		t.Run(s, func(t *testing.T) {
			a := mustAddr(s)
			k := a.As16()
			wantHi, wantLo := splitKey(k)
			wantW := binary.BigEndian.Uint64(k[:8])
			if a.Is4() {
				wantW = uint64(binary.BigEndian.Uint32(k[12:]))
			}
			hi, lo, w := addrKey(a)
			if hi != wantHi || lo != wantLo || w != wantW {
				t.Errorf("addrKey = %#x %#x %#x, want %#x %#x %#x", hi, lo, w, wantHi, wantLo, wantW)
			}
			if joinKey(hi, lo) != a.Unmap().WithZone("") {
				t.Errorf("joinKey(addrKey) = %s", joinKey(hi, lo))
			}
		})
	}
}
