package event

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

func ev(i int, src string) Event {
	return Event{Time: time.Unix(int64(i), 0), Kind: RejectedByService, Source: netip.MustParseAddr(src), Reason: ReasonStatus, Detail: strconv.Itoa(i)}
}

func details(es []Event) string {
	s := ""
	for _, e := range es {
		s += e.Detail + ","
	}
	return s
}

func TestRingKeepsNewestInOrder(t *testing.T) {
	r := NewRing(4)
	if got := r.Recent(Filter{}, 0); len(got) != 0 {
		t.Fatalf("empty ring returned %d events", len(got))
	}
	for i := 1; i <= 6; i++ {
		r.Emit(ev(i, "192.0.2.1"))
	}
	if got := details(r.Recent(Filter{}, 0)); got != "3,4,5,6," {
		t.Errorf("Recent = %s, want the last 4 oldest first", got)
	}
	if got := details(r.Recent(Filter{}, 2)); got != "5,6," {
		t.Errorf("Recent limit 2 = %s", got)
	}
}

func TestRingFilter(t *testing.T) {
	r := NewRing(16)
	r.Emit(ev(1, "192.0.2.1"))
	r.Emit(ev(2, "198.51.100.7"))
	r.Emit(Event{Time: time.Unix(3, 0), Kind: Success, Source: netip.MustParseAddr("192.0.2.1"), User: "alice", Detail: "3"})
	r.Emit(ev(4, "2001:db8::1"))
	for _, tc := range []struct {
		name string
		f    Filter
		want string
	}{
		{"all", Filter{}, "1,2,3,4,"},
		{"source address", Filter{Source: netip.MustParsePrefix("192.0.2.1/32")}, "1,3,"},
		{"source network v6", Filter{Source: netip.MustParsePrefix("2001:db8::/32")}, "4,"},
		{"kind", Filter{Kind: Success}, "3,"},
		{"suspicious", Filter{Suspicious: true}, "1,2,4,"},
		{"user", Filter{User: "alice"}, "3,"},
		{"since", Filter{Since: time.Unix(2, 0)}, "2,3,4,"},
		{"reason", Filter{Reason: ReasonStatus}, "1,2,4,"},
		{"no match", Filter{Listener: "nope"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := details(r.Recent(tc.f, 0)); got != tc.want {
				t.Errorf("got %s want %s", got, tc.want)
			}
		})
	}
}

func TestRingFollow(t *testing.T) {
	r := NewRing(8)
	ch, stop := r.Follow(Filter{Source: netip.MustParsePrefix("192.0.2.0/24")}, 2)
	r.Emit(ev(1, "198.51.100.1")) // filtered out
	r.Emit(ev(2, "192.0.2.9"))
	r.Emit(ev(3, "192.0.2.9"))
	r.Emit(ev(4, "192.0.2.9")) // buffer of 2 is full: dropped
	if got := (<-ch).Detail + (<-ch).Detail; got != "23" {
		t.Errorf("followed %s, want 2 then 3", got)
	}
	if r.Dropped() != 1 {
		t.Errorf("Dropped = %d, want 1", r.Dropped())
	}
	stop()
	stop() // idempotent
	if _, ok := <-ch; ok {
		t.Error("channel still open after stop")
	}
	ch2, _ := r.Follow(Filter{}, 1)
	_ = r.Close()
	if _, ok := <-ch2; ok {
		t.Error("channel still open after Close")
	}
	ch3, stop3 := r.Follow(Filter{}, 1)
	if _, ok := <-ch3; ok {
		t.Error("Follow after Close returned an open channel")
	}
	stop3()
	r.Emit(ev(5, "192.0.2.9")) // still works after Close
	if got := details(r.Recent(Filter{}, 1)); got != "5," {
		t.Errorf("Recent after Close = %s", got)
	}
}

// TestRingRecentSinceStopsEarly: with Since, Recent tolerates events up to
// a second out of time order and stops at the first event older than that:
// an event stored before it is not looked at, even one that would match.
func TestRingRecentSinceStopsEarly(t *testing.T) {
	r := NewRing(16)
	r.Emit(ev(100, "192.0.2.1")) // would match, but behind the stop
	r.Emit(ev(10, "192.0.2.1"))  // far older than Since: the walk ends here
	r.Emit(ev(50, "192.0.2.1"))  // out of order by less than a second: kept
	r.Emit(ev(51, "192.0.2.1"))
	r.Emit(ev(52, "192.0.2.1"))
	// Events: 100, 10, 50, 51, 52; Since 50.5 keeps 51 and 52, looks at 50
	// (within the slack, not matching) and stops at 10.
	got := details(r.Recent(Filter{Since: time.Unix(50, 5e8)}, 0))
	if got != "51,52," {
		t.Errorf("Recent since 50.5 = %s, want 51,52,", got)
	}
	// Without Since the whole ring is searched.
	if got := details(r.Recent(Filter{Source: netip.MustParsePrefix("192.0.2.1/32")}, 0)); got != "100,10,50,51,52," {
		t.Errorf("Recent = %s", got)
	}
}

func BenchmarkRingRecentOneSource(b *testing.B) {
	r := NewRing(10000)
	for i := range 10000 {
		r.Emit(Event{Time: time.Unix(int64(i)/100, 0), Kind: RejectedByService,
			Source: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})})
	}
	src := netip.MustParsePrefix("10.0.39.15/32") // the newest event's source
	for _, since := range []bool{false, true} {
		f := Filter{Source: src, Suspicious: true}
		if since {
			f.Since = time.Unix(99-60, 0)
		}
		b.Run("since="+strconv.FormatBool(since), func(b *testing.B) {
			for b.Loop() {
				if len(r.Recent(f, 27)) != 1 {
					b.Fatal("not found")
				}
			}
		})
	}
}

// TestRingSourceChains: Recent for one source's suspicious events follows
// that source's chain; it must give what a scan of the whole ring gives,
// also after the ring wrapped many times and overwrote parts of chains,
// with success events in between and with limits.
func TestRingSourceChains(t *testing.T) {
	const size = 37
	r := NewRing(size)
	var all []Event
	srcs := []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::1", "::ffff:192.0.2.1"}
	for i := range 2000 {
		e := ev(i, srcs[(i*7+i/5)%len(srcs)])
		if i%4 == 1 {
			e.Kind = Success
		}
		r.Emit(e)
		all = append(all, e)
		if i%13 != 0 {
			continue
		}
		inRing := all[max(len(all)-size, 0):]
		for _, s := range srcs {
			for _, limit := range []int{0, 1, 3, 50} {
				f := Filter{Source: netip.PrefixFrom(netip.MustParseAddr(s), netip.MustParseAddr(s).BitLen()), Suspicious: true}
				var want []Event
				for j := len(inRing) - 1; j >= 0 && (limit == 0 || len(want) < limit); j-- {
					if f.Match(inRing[j]) {
						want = append([]Event{inRing[j]}, want...)
					}
				}
				if got := details(r.Recent(f, limit)); got != details(want) {
					t.Fatalf("after %d events, source %s, limit %d: Recent = %s, want %s", i+1, s, limit, got, details(want))
				}
			}
		}
	}
	if n := len(r.newest); n > len(srcs) {
		t.Errorf("%d chain heads for %d sources", n, len(srcs))
	}
}

// TestRingChainsForget: a source whose events all left the ring leaves no
// chain head behind, so the index stays bounded by the ring.
func TestRingChainsForget(t *testing.T) {
	r := NewRing(8)
	for i := range 1000 {
		r.Emit(ev(i, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String()))
	}
	if n := len(r.newest); n != 8 {
		t.Errorf("%d chain heads, want 8 (one per event in the ring)", n)
	}
	if got := details(r.Recent(Filter{Source: netip.MustParsePrefix("10.0.0.1/32"), Suspicious: true}, 0)); got != "" {
		t.Errorf("an overwritten event is still found: %s", got)
	}
}

// BenchmarkRingEmit: storing one event, suspicious (chained per source) or
// not, with a few thousand sources in the ring.
func BenchmarkRingEmit(b *testing.B) {
	for _, kind := range []Kind{RejectedByService, Success} {
		b.Run(kind.String(), func(b *testing.B) {
			r := NewRing(10000)
			e := Event{Time: time.Unix(1, 0), Kind: kind, Listener: "web", Proto: "http"}
			i := 0
			for b.Loop() {
				e.Source = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8 & 15), byte(i)})
				r.Emit(e)
				i++
			}
		})
	}
}
