package fraud

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/pbxgate/pbxgate/internal/store"
)

// TestHashSpreadsNeighbours: consecutive addresses, which is how attackers
// and NATed users often come, spread over the counting shards (low bits of
// the hash), the guard's shards (top bits) and a table's home slots as
// random keys would. With a weak finaliser 1,000 consecutive IPv4
// addresses fell on 4 of 64 shards.
func TestHashSpreadsNeighbours(t *testing.T) {
	seed := rand.Uint64()
	cfg := testConfig()
	cfg.MaxSources = 1_000_000 // 64 counting shards
	e, err := New(cfg, store.NewMemory(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		addr func(i int) netip.Addr
	}{
		{"IPv4", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 2, byte(i >> 8), byte(i)}) }},
		{"IPv6", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)})
		}},
		{"IPv6 /64s", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 6: byte(i >> 8), 7: byte(i), 15: 1})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			const n = 1000
			low6, top6, low10, shards := map[uint64]bool{}, map[uint64]bool{}, map[uint64]bool{}, map[int]bool{}
			for i := range n {
				h := hashAddr(c.addr(i), seed)
				low6[h&63], top6[h>>58], low10[h&1023] = true, true, true
				si, _ := e.cshardOf(hashAddr(c.addr(i), e.seed))
				shards[si] = true
			}
			// Random keys: all 64 of 64 (a bin stays empty with
			// probability about 1e-5), about 638 of 1024.
			if len(low6) < 60 || len(top6) < 60 || len(low10) < 550 {
				t.Errorf("%d consecutive addresses: low 6 bits take %d of 64 values, top 6 bits %d of 64, low 10 bits %d of 1024",
					n, len(low6), len(top6), len(low10))
			}
			if len(shards) < 60 {
				t.Errorf("%d consecutive sources use %d of %d counting shards", n, len(shards), len(e.shards))
			}
		})
	}
}
