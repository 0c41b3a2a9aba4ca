package fraud

import (
	"testing"
	"time"
)

func TestStanding(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = append(cfg.Whitelist, mustPrefix("192.0.2.200/32"))
	cfg.ReasonWeights = map[string]int{"auth_challenge": 0}
	h := newHarness(t, cfg)
	for _, tc := range []struct {
		name string
		src  string
		do   func()
		want Standing
	}{
		{"never seen", "192.0.2.1", func() {}, Unproven},
		{"one failure", "192.0.2.2", func() { h.emitN(fail("192.0.2.2"), 1) }, Suspect},
		{"login prompt weighs nothing", "192.0.2.3", func() {
			ev := fail("192.0.2.3")
			ev.Reason = "auth_challenge"
			h.e.Emit(ev)
		}, Unproven},
		{"whitelisted", "192.0.2.200", func() { h.emitN(fail("192.0.2.200"), 3) }, Proven},
		{"office with known users", "192.0.2.4", func() {
			h.e.Emit(success("192.0.2.4", "pbx", "100"))
			h.emitN(userFail("192.0.2.4", "pbx", "101"), 2)
		}, Proven},
		{"logged in", "192.0.2.6", func() { h.e.Emit(success("192.0.2.6", "pbx", "100")) }, Proven},
		{"success naming no user", "192.0.2.7", func() { h.e.Emit(success("192.0.2.7", "pbx", "")) }, Unproven},
		{"v6", "2001:db8::9", func() { h.emitN(fail("2001:db8::9"), 2) }, Suspect},
		{"v4-mapped", "::ffff:192.0.2.2", func() {}, Suspect},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			if got := h.e.Standing(mustAddr(tc.src)); got != tc.want {
				t.Errorf("Standing(%s) = %v, want %v", tc.src, got, tc.want)
			}
		})
	}
	// The window forgets failures: a minute later nobody is a suspect.
	h.clock.Advance(61 * time.Second)
	if got := h.e.Standing(mustAddr("192.0.2.2")); got != Unproven {
		t.Errorf("after the window: %v, want unproven", got)
	}
	// A login is remembered for the NAT window, not longer.
	h.clock.Advance(cfg.NATWindow)
	if got := h.e.Standing(mustAddr("192.0.2.6")); got != Unproven {
		t.Errorf("after the NAT window: %v, want unproven", got)
	}
	// Counting off: everyone is proven (the gates are off).
	cfg.Enabled = false
	if err := h.e.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.emitN(fail("192.0.2.5"), 2)
	if got := h.e.Standing(mustAddr("192.0.2.5")); got != Proven {
		t.Errorf("counting off: %v, want proven", got)
	}
}

func TestStandingAllocs(t *testing.T) {
	h := newHarness(t, testConfig())
	h.emitN(fail("192.0.2.2"), 1)
	h.e.Emit(success("192.0.2.3", "pbx", "100"))
	for _, s := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		a := mustAddr(s)
		if n := testing.AllocsPerRun(100, func() { h.e.Standing(a) }); n != 0 {
			t.Errorf("Standing(%s) allocates %v times", s, n)
		}
	}
}
