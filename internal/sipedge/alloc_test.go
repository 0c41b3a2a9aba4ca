//go:build !race

// Allocation counts are taken without the race detector, which makes
// sync.Pool drop items at random; scripts/test.sh runs them so.

package sipedge

import (
	"net/netip"
	"testing"

	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// TestInspectAllocs: relaying a message through an open flow costs no
// allocation, in either direction, policy included (without the race
// detector, which makes sync.Pool drop items).
func TestInspectAllocs(t *testing.T) {
	f := newFixture(t, nil)
	lm := NewMetrics(nil).listener("alloc", "udp")
	scratch := make([]byte, udprelay.ScratchSize)
	flow := &udprelay.Flow{Client: netip.MustParseAddrPort("192.0.2.10:5060"), Backend: f.pbx.UDP}
	for _, tc := range []struct {
		name       string
		b          []byte
		fromClient bool
	}{
		{"REGISTER from a company network", register("alice", "hq.example.com", "a-1"), true},
		{"in-dialog BYE", msg{method: "BYE", from: "alice@hq.example.com", to: "201@hq.example.com", toTag: "t", callID: "unknown"}.bytes(), true},
		{"200 to REGISTER", msg{status: 200, cseqMethod: "REGISTER", from: "alice@hq.example.com", to: "alice@hq.example.com", toTag: "t"}.bytes(), false},
		{"OPTIONS from the PBX", msg{method: "OPTIONS", from: "pbx@pbx.example.com", to: "alice@hq.example.com"}.bytes(), false},
	} {
		f.p.inspectUDP("alloc", lm, flow, tc.b, tc.fromClient, scratch) // warm up
		v := f.p.inspectUDP("alloc", lm, flow, tc.b, tc.fromClient, scratch)
		if v.Forward == nil {
			t.Fatalf("%s: dropped", tc.name)
		}
		a := testing.AllocsPerRun(200, func() { f.p.inspectUDP("alloc", lm, flow, tc.b, tc.fromClient, scratch) })
		if tc.name == "200 to REGISTER" {
			// A success is an event (its user is a string): one event's
			// worth, no more.
			if a > 2 {
				t.Errorf("%s: %v allocations per message", tc.name, a)
			}
			continue
		}
		if a != 0 {
			t.Errorf("%s: %v allocations per message", tc.name, a)
		}
	}
}
