package fraud

import (
	"testing"
	"time"
)

func TestSuspect(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = append(cfg.Whitelist, mustPrefix("192.0.2.200/32"))
	cfg.ReasonWeights = map[string]int{"auth_challenge": 0}
	h := newHarness(t, cfg)
	for _, tc := range []struct {
		name string
		src  string
		do   func()
		want bool
	}{
		{"never seen", "192.0.2.1", func() {}, false},
		{"one failure", "192.0.2.2", func() { h.emitN(fail("192.0.2.2"), 1) }, true},
		{"login prompt weighs nothing", "192.0.2.3", func() {
			ev := fail("192.0.2.3")
			ev.Reason = "auth_challenge"
			h.e.Emit(ev)
		}, false},
		{"whitelisted", "192.0.2.200", func() { h.emitN(fail("192.0.2.200"), 3) }, false},
		{"office with known users", "192.0.2.4", func() {
			h.e.Emit(success("192.0.2.4", "pbx", "100"))
			h.emitN(userFail("192.0.2.4", "pbx", "101"), 2)
		}, false},
		{"v6", "2001:db8::9", func() { h.emitN(fail("2001:db8::9"), 2) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			if got := h.e.Suspect(mustAddr(tc.src)); got != tc.want {
				t.Errorf("Suspect(%s) = %v, want %v", tc.src, got, tc.want)
			}
		})
	}
	// The window forgets: a minute later nobody is a suspect.
	h.clock.Advance(61 * time.Second)
	if h.e.Suspect(mustAddr("192.0.2.2")) {
		t.Error("still a suspect after the window")
	}
	// Counting off: nobody is.
	cfg.Enabled = false
	if err := h.e.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	h.emitN(fail("192.0.2.5"), 2)
	if h.e.Suspect(mustAddr("192.0.2.5")) {
		t.Error("suspect while counting is off")
	}
}

func TestSuspectAllocs(t *testing.T) {
	h := newHarness(t, testConfig())
	h.emitN(fail("192.0.2.2"), 1)
	a := mustAddr("192.0.2.2")
	if n := testing.AllocsPerRun(100, func() { h.e.Suspect(a) }); n != 0 {
		t.Errorf("Suspect allocates %v times", n)
	}
}
