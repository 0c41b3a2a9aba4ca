package sippolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newFlood(t testing.TB, c FloodConfig) *Flood {
	t.Helper()
	f, err := NewFlood(c)
	if err != nil {
		t.Fatalf("NewFlood: %v", err)
	}
	return f
}

// addrN returns a distinct IPv4 (n < 2^32) address per n.
func addrN(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func TestFloodConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  FloodConfig
		want []string // substrings, one per expected problem
	}{
		{"zero means defaults", FloodConfig{}, nil},
		{"explicit", FloodConfig{Window: time.Second, Limit: 10, BlockFor: time.Minute, MaxSources: 5,
			Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:192.0.2.0/120")}}, nil},
		{"window too short", FloodConfig{Window: time.Millisecond}, []string{"window 1ms"}},
		{"negative limit", FloodConfig{Limit: -1}, []string{"limit -1"}},
		{"limit too high", FloodConfig{Limit: 70000}, []string{"limit 70000"}},
		{"block too short", FloodConfig{BlockFor: time.Millisecond}, []string{"block_for 1ms"}},
		{"max sources", FloodConfig{MaxSources: -3}, []string{"max_sources -3"}},
		{"invalid prefix", FloodConfig{Exempt: []netip.Prefix{{}}}, []string{"exempt[0]"}},
		{"short mapped prefix", FloodConfig{Exempt: []netip.Prefix{netip.MustParsePrefix("::ffff:0.0.0.0/80")}}, []string{"exempt[0] ::ffff:0.0.0.0/80"}},
		{"every problem at once", FloodConfig{Window: -1, Limit: -1, BlockFor: -1, MaxSources: -1},
			[]string{"window", "limit", "block_for", "max_sources"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, nerr := NewFlood(tt.cfg)
			if (err == nil) != (nerr == nil) {
				t.Fatalf("Validate %v, NewFlood %v: disagree", err, nerr)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error %v does not wrap ErrConfig", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("got %d problems, want %d: %v", len(lines), len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestFloodLimitExact(t *testing.T) {
	for _, limit := range []int{1, 5, 100} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			f := newFlood(t, FloodConfig{Limit: limit})
			src := netip.MustParseAddr("198.51.100.7")
			for i := range limit {
				if v := f.Check(src, t0); !v.Allow || v.JustBlocked {
					t.Fatalf("request %d of %d: %+v, want allowed", i+1, limit, v)
				}
			}
			if f.Blocked(src, t0) {
				t.Fatal("Blocked before the limit was passed")
			}
			v := f.Check(src, t0)
			if v.Allow || !v.JustBlocked || !v.Until.Equal(t0.Add(DefaultFloodBlockFor)) {
				t.Fatalf("request %d: %+v, want just blocked until %v", limit+1, v, t0.Add(DefaultFloodBlockFor))
			}
			if v := f.Check(src, t0.Add(time.Second)); v.Allow || v.JustBlocked || !v.Until.Equal(t0.Add(DefaultFloodBlockFor)) {
				t.Fatalf("next request: %+v, want blocked, not just blocked", v)
			}
			// Another source is not affected.
			if v := f.Check(netip.MustParseAddr("198.51.100.8"), t0); !v.Allow {
				t.Fatalf("other source: %+v", v)
			}
		})
	}
}

func TestFloodSliding(t *testing.T) {
	src := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name      string
		times     []time.Duration // one request at each offset from t0
		wantBlock bool
	}{
		// A fixed 2s window (pike) lets both halves through: 160 requests in 0.2s.
		{"burst straddling a boundary", append(repeat(80, 1900*time.Millisecond), repeat(80, 2100*time.Millisecond)...), true},
		{"burst at the very boundary", append(repeat(100, 2*time.Second-1), repeat(1, 2*time.Second)...), true},
		{"steady rate under the limit", every(400, 25*time.Millisecond), false}, // 80 per 2s for 10s
		{"steady rate over the limit", every(400, 15*time.Millisecond), true},   // 133 per 2s
		{"limit, then a quiet window", append(repeat(100, 0), repeat(100, 4*time.Second)...), false},
		{"limit in each of two far windows", append(repeat(100, 1*time.Second), repeat(100, 5*time.Second)...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFlood(t, FloodConfig{})
			blocked := false
			for i, d := range tt.times {
				v := f.Check(src, t0.Add(d))
				if !v.Allow {
					blocked = true
					if !v.JustBlocked {
						t.Fatalf("request %d blocked without JustBlocked first", i)
					}
					break
				}
			}
			if blocked != tt.wantBlock {
				t.Fatalf("blocked = %v, want %v", blocked, tt.wantBlock)
			}
		})
	}
}

func repeat(n int, at time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = at
	}
	return out
}

func every(n int, step time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * step
	}
	return out
}

func TestFloodBlockAndRecovery(t *testing.T) {
	const limit = 3
	block := time.Minute
	f := newFlood(t, FloodConfig{Limit: limit, BlockFor: block})
	src := netip.MustParseAddr("192.0.2.1")
	justBlocked := 0
	now := t0
	for round := range 3 {
		start := now
		for i := 0; i <= limit; i++ {
			if v := f.Check(src, now); v.JustBlocked {
				justBlocked++
			}
		}
		if justBlocked != round+1 {
			t.Fatalf("round %d: %d JustBlocked, want %d", round, justBlocked, round+1)
		}
		end := start.Add(block)
		for _, at := range []time.Time{start, start.Add(block / 2), end.Add(-time.Nanosecond)} {
			if !f.Blocked(src, at) {
				t.Fatalf("round %d: not Blocked at %v", round, at.Sub(start))
			}
			if v := f.Check(src, at); v.Allow || v.JustBlocked || !v.Until.Equal(end) {
				t.Fatalf("round %d: Check at %v = %+v, want blocked until %v", round, at.Sub(start), v, end)
			}
		}
		if f.Blocked(src, end) {
			t.Fatalf("round %d: still Blocked at the end", round)
		}
		if st := f.Stats(end.Add(-1)); st.BlockedNow != 1 || st.BlocksTotal != uint64(round+1) {
			t.Fatalf("round %d: stats %+v", round, st)
		}
		// After the block the source starts afresh: limit requests pass.
		for i := range limit {
			if v := f.Check(src, end); !v.Allow {
				t.Fatalf("round %d: request %d after the block: %+v", round, i, v)
			}
		}
		now = end
	}
	if st := f.Stats(now.Add(time.Hour)); st.BlockedNow != 0 || st.BlocksTotal != 3 || st.Sources != 1 {
		t.Fatalf("final stats %+v", st)
	}
}

func TestFloodExempt(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 2, Exempt: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8:1::/48"),
		netip.MustParsePrefix("::ffff:192.0.2.0/120"), // 192.0.2.0/24
	}})
	for _, s := range []string{"10.1.2.3", "::ffff:10.9.9.9", "2001:db8:1::5", "192.0.2.200"} {
		src := netip.MustParseAddr(s)
		for i := range 50 {
			if v := f.Check(src, t0); !v.Allow {
				t.Fatalf("%s request %d: %+v", s, i, v)
			}
		}
		if f.Blocked(src, t0) {
			t.Fatalf("%s Blocked", s)
		}
	}
	if st := f.Stats(t0); st.Sources != 0 {
		t.Fatalf("exempt sources tracked: %+v", st)
	}
	// Not exempt: the neighbours, counted as one address mapped or not.
	for _, s := range []string{"11.0.0.1", "2001:db8:2::5", "192.0.3.1"} {
		src := netip.MustParseAddr(s)
		mapped := netip.AddrFrom16(src.As16())
		f.Check(src, t0)
		f.Check(mapped, t0)
		if v := f.Check(src, t0); !v.JustBlocked {
			t.Fatalf("%s third request: %+v, want just blocked", s, v)
		}
		if !f.Blocked(mapped, t0) {
			t.Fatalf("%s: mapped form not Blocked", s)
		}
	}
}

func TestFloodInvalidSource(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 1})
	for range 3 {
		if v := f.Check(netip.Addr{}, t0); !v.Allow {
			t.Fatalf("invalid source: %+v", v)
		}
	}
	if f.Blocked(netip.Addr{}, t0) || f.Stats(t0).Sources != 0 {
		t.Fatal("invalid source was tracked")
	}
}

func TestFloodClockStepsBack(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 10})
	src := netip.MustParseAddr("192.0.2.9")
	for i := range 9 {
		f.Check(src, t0.Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	// The clock steps back an hour: the count goes on from there and
	// decays as time moves on, instead of sticking to the future window.
	if v := f.Check(src, t0); !v.Allow {
		t.Fatalf("after the step back: %+v", v)
	}
	for i := range 10 {
		if v := f.Check(src, t0.Add(10*time.Second+time.Duration(i))); !v.Allow {
			t.Fatalf("request %d 10s later: %+v", i, v)
		}
	}
}

func TestFloodEvictionPrefersLowCount(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 100, MaxSources: 4})
	counts := []int{5, 1, 5, 5}
	for i, n := range counts {
		for range n {
			f.Check(addrN(uint32(i+1)), t0)
		}
	}
	f.Check(addrN(100), t0)
	// addrN(2) had the lowest count: it must be gone, the others kept.
	for i, n := range counts {
		// A source's count is observable: it is blocked after limit-n more.
		src := addrN(uint32(i + 1))
		kept := false
		for range 100 - n {
			f.Check(src, t0)
		}
		if v := f.Check(src, t0); v.JustBlocked {
			kept = true
		}
		if kept != (i != 1) {
			t.Errorf("source %d (count %d): kept = %v", i+1, n, kept)
		}
	}
}

func TestFloodEvictionAllBlocked(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 1, MaxSources: 4, BlockFor: time.Minute})
	// Block four sources at different times: addrN(3) ends first.
	for i, at := range []time.Duration{3, 2, 0, 1} {
		src := addrN(uint32(i + 1))
		f.Check(src, t0.Add(at*time.Second))
		if v := f.Check(src, t0.Add(at*time.Second)); !v.JustBlocked {
			t.Fatalf("setup %d: %+v", i, v)
		}
	}
	now := t0.Add(10 * time.Second)
	f.Check(addrN(100), now)
	for i := range 4 {
		want := i != 2
		if got := f.Blocked(addrN(uint32(i+1)), now); got != want {
			t.Errorf("source %d: Blocked = %v, want %v", i+1, got, want)
		}
	}
	if st := f.Stats(now); st.Sources != 4 || st.Evictions != 1 || st.BlockedNow != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestFloodEvictionUnderFlood(t *testing.T) {
	const maxSources = 10_000
	f := newFlood(t, FloodConfig{Limit: 5, MaxSources: maxSources})
	bad := netip.MustParseAddr("2001:db8::bad")
	for range 6 {
		f.Check(bad, t0)
	}
	if !f.Blocked(bad, t0) {
		t.Fatal("setup: not blocked")
	}
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	for i := range n {
		// 1M distinct sources, one request each, over 100 s.
		now := t0.Add(time.Duration(i) * 100 * time.Microsecond)
		if v := f.Check(addrN(uint32(0x0a000000+i)), now); !v.Allow {
			t.Fatalf("fresh source %d: %+v", i, v)
		}
	}
	end := t0.Add(time.Duration(n) * 100 * time.Microsecond)
	if !f.Blocked(bad, end) {
		t.Fatal("the flood evicted a blocked source")
	}
	st := f.Stats(end)
	if st.Sources > maxSources || st.Sources < maxSources-64 {
		t.Errorf("sources %d, want about %d", st.Sources, maxSources)
	}
	if want := uint64(n + 1 - maxSources); st.Evictions < want {
		t.Errorf("evictions %d, want at least %d", st.Evictions, want)
	}
	if st.BlockedNow != 1 {
		t.Errorf("blocked now %d, want 1", st.BlockedNow)
	}
}

func TestFloodReconfigure(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 3})
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("203.0.113.9")
	for range 4 {
		f.Check(a, t0)
	}
	f.Check(b, t0)
	f.Check(b, t0)
	for range 4 {
		f.Check(c, t0)
	}

	if err := f.Reconfigure(FloodConfig{Limit: -5}); err == nil {
		t.Fatal("bad config accepted")
	}
	// Raise the limit: the block stays, the count goes on under the new limit.
	if err := f.Reconfigure(FloodConfig{Limit: 4, Exempt: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}); err != nil {
		t.Fatal(err)
	}
	if !f.Blocked(a, t0) {
		t.Error("block lost by Reconfigure")
	}
	if f.Blocked(c, t0) {
		t.Error("newly exempt source still blocked")
	}
	for i := range 2 {
		if v := f.Check(b, t0); !v.Allow {
			t.Fatalf("b request %d under the new limit: %+v", 3+i, v)
		}
	}
	if v := f.Check(b, t0); !v.JustBlocked {
		t.Fatalf("b fifth request: %+v, want just blocked", v)
	}
	// A new window restarts the counts but keeps blocks.
	d := netip.MustParseAddr("192.0.2.4")
	for range 4 {
		f.Check(d, t0)
	}
	if err := f.Reconfigure(FloodConfig{Limit: 4, Window: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if !f.Blocked(a, t0) || !f.Blocked(b, t0) {
		t.Error("blocks lost by a window change")
	}
	for i := range 4 {
		if v := f.Check(d, t0); !v.Allow {
			t.Fatalf("d request %d after the window change: %+v", i, v)
		}
	}
	if f.Stats(t0).Sources != 3 {
		t.Errorf("stats %+v, want 3 sources (c dropped)", f.Stats(t0))
	}
}

func TestFloodForget(t *testing.T) {
	f := newFlood(t, FloodConfig{Limit: 1})
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "198.51.100.1"} {
		f.Check(netip.MustParseAddr(s), t0)
		f.Check(netip.MustParseAddr(s), t0)
	}
	if n := f.Forget(netip.MustParsePrefix("::ffff:192.0.2.0/120")); n != 2 {
		t.Fatalf("Forget dropped %d, want 2", n)
	}
	if f.Blocked(netip.MustParseAddr("192.0.2.1"), t0) || !f.Blocked(netip.MustParseAddr("198.51.100.1"), t0) {
		t.Fatal("Forget dropped the wrong sources")
	}
	if f.Forget(netip.Prefix{}) != 0 {
		t.Fatal("invalid prefix dropped something")
	}
}

func TestFloodConcurrent(t *testing.T) {
	const (
		limit   = 50
		workers = 8
		perW    = 500
	)
	f := newFlood(t, FloodConfig{Limit: limit, MaxSources: 2000})
	shared := netip.MustParseAddr("2001:db8::5")
	var allowed, just atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perW {
				v := f.Check(shared, t0)
				if v.Allow {
					allowed.Add(1)
				}
				if v.JustBlocked {
					just.Add(1)
				}
				f.Check(addrN(uint32(w*perW+i)), t0.Add(time.Duration(i)*time.Millisecond))
				f.Blocked(addrN(uint32(i)), t0)
				if i%100 == 0 {
					f.Stats(t0)
					if err := f.Reconfigure(FloodConfig{Limit: limit, MaxSources: 2000}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != limit || just.Load() != 1 {
		t.Fatalf("shared source: %d allowed, %d just blocked; want %d and 1", allowed.Load(), just.Load(), limit)
	}
	if st := f.Stats(t0); st.Sources > 2000 {
		t.Fatalf("sources %d over MaxSources", st.Sources)
	}
}

func TestFloodAllocs(t *testing.T) {
	const maxSources = 4096
	f := newFlood(t, FloodConfig{MaxSources: maxSources})
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	f.Check(v4, t0)
	f.Check(v6, t0)
	if n := testing.AllocsPerRun(1000, func() {
		f.Check(v4, t0)
		f.Check(v6, t0)
		f.Blocked(v4, t0)
	}); n != 0 {
		t.Errorf("existing source: %v allocs per run", n)
	}
	// Warm up: fill past MaxSources so each new source evicts one.
	next := uint32(0)
	for range 4 * maxSources {
		f.Check(addrN(next), t0)
		next++
	}
	if n := testing.AllocsPerRun(10_000, func() {
		f.Check(addrN(next), t0)
		next++
	}); n != 0 {
		t.Errorf("new source: %v allocs per run", n)
	}
}

func TestFloodSourceSize(t *testing.T) {
	if got := unsafe.Sizeof(floodSource{}); got != 32 {
		t.Fatalf("floodSource is %d bytes, want 32", got)
	}
}

// TestFloodMemory measures the bytes per tracked source, index included
// (the number quoted in the Flood doc comment).
func TestFloodMemory(t *testing.T) {
	const n = 200_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f := newFlood(t, FloodConfig{MaxSources: n})
	for i := range n {
		f.Check(addrN(uint32(i)), t0)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.1f bytes per source (%d sources)", per, f.Stats(t0).Sources)
	if per > 128 {
		t.Errorf("%.1f bytes per source, want at most 128", per)
	}
	runtime.KeepAlive(f)
}
