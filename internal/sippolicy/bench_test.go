package sippolicy

import (
	"net/netip"
	"testing"
	"time"
)

func BenchmarkFloodCheck(b *testing.B) {
	exempt := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	b.Run("existing", func(b *testing.B) {
		f := newFlood(b, FloodConfig{Limit: 1 << 15, Exempt: exempt})
		src := netip.MustParseAddr("192.0.2.1")
		for i := 0; b.Loop(); i++ {
			f.Check(src, t0.Add(time.Duration(i)*time.Millisecond))
		}
	})
	b.Run("new_full", func(b *testing.B) {
		f := newFlood(b, FloodConfig{MaxSources: 100_000, Exempt: exempt})
		var n uint32
		for range 200_000 {
			f.Check(addrN(n), t0)
			n++
		}
		for b.Loop() {
			f.Check(addrN(n), t0)
			n++
		}
	})
	b.Run("exempt", func(b *testing.B) {
		f := newFlood(b, FloodConfig{Exempt: exempt})
		src := netip.MustParseAddr("10.1.2.3")
		for b.Loop() {
			f.Check(src, t0)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		f := newFlood(b, FloodConfig{MaxSources: 100_000, Exempt: exempt})
		b.RunParallel(func(pb *testing.PB) {
			var n uint32
			for pb.Next() {
				f.Check(addrN(n%50_000), t0)
				n++
			}
		})
	})
}
