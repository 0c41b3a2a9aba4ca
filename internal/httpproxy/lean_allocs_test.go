//go:build !race

package httpproxy

import "testing"

// Allocation counts are taken without the race detector, which makes
// sync.Pool drop items at random; scripts/test.sh runs these tests in a
// second, race-free pass.

// TestLeanAllocs checks that a proxied request allocates at most twice on
// the lean path (the client, the origin and the gateway share the process;
// the first two do not allocate).
func TestLeanAllocs(t *testing.T) {
	leakCheck(t)
	origin := fastOrigin(t)
	env := startProxy(t, modePlain, Options{Services: []Service{
		{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: origin}, Rules: benchRules(t)},
	}}, ServerOptions{})
	cl := newBenchClient(t, env.addr)
	for range 10 {
		if st, err := cl.do(); err != nil || st != 200 {
			t.Fatalf("%d %v", st, err)
		}
	}
	n := testing.AllocsPerRun(200, func() {
		if st, err := cl.do(); err != nil || st != 200 {
			t.Fatalf("%d %v", st, err)
		}
	})
	if n > 2 {
		t.Fatalf("%v allocations per request, want at most 2", n)
	}
}
