package fraud

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// office is one public address with 60 phones behind it.
const office = "198.51.100.20"

func officeUsers(h *harness, service string, n int) {
	for i := range n {
		ev := success(office, service, fmt.Sprintf("%d", 100+i))
		ev.Time = h.clock.Now()
		h.e.Emit(ev)
	}
}

func TestNATAcceptance(t *testing.T) {
	h := newHarness(t, testConfig())
	// After an outage: every phone fails once (stale nonce), re-registers
	// successfully, and five users mistype their password.
	for i := range 60 {
		h.emitN(userFail(office, "pbx", fmt.Sprintf("%d", 100+i)), 0)
	}
	officeUsers(h, "pbx", 60)
	for i := range 60 {
		h.emitN(userFail(office, "pbx", fmt.Sprintf("%d", 100+i)), 1)
	}
	for i := range 5 {
		h.emitN(userFail(office, "pbx", fmt.Sprintf("%d", 100+i)), 1)
	}
	if !h.e.Allowed(mustAddr(office)) {
		t.Fatal("office banned after a mass re-registration")
	}
	info, _ := h.e.Inspect(bg, mustAddr(office))
	if info.KnownUsers != 60 || info.Threshold != 600 || info.Score != 65 {
		t.Errorf("office: %+v", info)
	}

	// A scanner on the same address trying unknown users is banned at 11.
	for i := range 10 {
		h.emitN(userFail(office, "pbx", fmt.Sprintf("admin%d", i)), 1)
	}
	if !h.e.Allowed(mustAddr(office)) {
		t.Fatal("banned after 10 unknown users")
	}
	h.emitN(userFail(office, "pbx", "root"), 1)
	if h.e.Allowed(mustAddr(office)) {
		t.Fatal("scanner behind the office address not banned")
	}
	ent, _ := h.blacklisted(t, office+"/32")
	if want := "76 weighted events in 1m, 11 not from known users (threshold 10; 60 known users)"; ent.Reason != want {
		t.Errorf("reason %q, want %q", ent.Reason, want)
	}
}

func TestNATKnownUserBruteForce(t *testing.T) {
	h := newHarness(t, testConfig())
	officeUsers(h, "pbx", 60)
	h.emitN(userFail(office, "pbx", "105"), 2) // two mistakes of another user
	h.emitN(userFail(office, "pbx", "100"), 10)
	if !h.e.Allowed(mustAddr(office)) {
		t.Fatal("banned after 10 failures of one known user")
	}
	h.emitN(userFail(office, "pbx", "100"), 1)
	if h.e.Allowed(mustAddr(office)) {
		t.Fatal("11 failures of one known user not banned")
	}
	info, _ := h.e.Inspect(bg, mustAddr(office))
	if info.Blacklisted == nil || !strings.Contains(info.Blacklisted.Reason, "13 weighted events in 1m, 11 not from known users") {
		t.Errorf("entry %+v", info.Blacklisted)
	}
}

func TestNATRules(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		setup  func(h *harness)
		fails  func(h *harness)
		banned bool
	}{
		{
			name:   "known failures under the raised threshold",
			setup:  func(h *harness) { officeUsers(h, "pbx", 3) },
			fails:  func(h *harness) { spread(h, "pbx", 3, 30) }, // 10 each
			banned: false,
		},
		{
			name:  "known plus unknown failures over the raised threshold",
			setup: func(h *harness) { officeUsers(h, "pbx", 3) },
			fails: func(h *harness) {
				spread(h, "pbx", 3, 30)
				h.emitN(userFail(office, "pbx", "stranger"), 1)
			},
			banned: true,
		},
		{
			name:   "factor capped by NATMaxFactor",
			cfg:    func(c *Config) { c.NATMaxFactor = 2 },
			setup:  func(h *harness) { officeUsers(h, "pbx", 10) },
			fails:  func(h *harness) { spread(h, "pbx", 10, 21) }, // 21 > 10×2
			banned: true,
		},
		{
			name:   "success on another service does not make the user known",
			setup:  func(h *harness) { officeUsers(h, "portal", 60) },
			fails:  func(h *harness) { spread(h, "pbx", 11, 11) },
			banned: true,
		},
		{
			name:   "known users expire after NATWindow",
			setup:  func(h *harness) { officeUsers(h, "pbx", 60); h.clock.Advance(time.Hour + time.Second) },
			fails:  func(h *harness) { spread(h, "pbx", 11, 11) },
			banned: true,
		},
		{
			name: "at most NATMaxFactor users per address, oldest replaced",
			cfg:  func(c *Config) { c.NATMaxFactor = 5 },
			setup: func(h *harness) {
				officeUsers(h, "pbx", 5) // users 100..104
				h.clock.Advance(time.Second)
				h.e.Emit(success(office, "pbx", "999")) // replaces 100
			},
			fails:  func(h *harness) { h.emitN(userFail(office, "pbx", "100"), 11) },
			banned: true,
		},
		{
			name: "successes from a whitelisted address are not recorded",
			setup: func(h *harness) {
				h.e.Allow(bg, mustPrefix(office+"/32"), 0, "")
				officeUsers(h, "pbx", 60)
				h.e.Disallow(bg, mustPrefix(office+"/32"))
			},
			fails:  func(h *harness) { spread(h, "pbx", 60, 11) },
			banned: true,
		},
		{
			name:   "the same users, recorded, are known",
			setup:  func(h *harness) { officeUsers(h, "pbx", 60) },
			fails:  func(h *harness) { spread(h, "pbx", 60, 11) },
			banned: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			h := newHarness(t, cfg)
			tc.setup(h)
			tc.fails(h)
			if got := !h.e.Allowed(mustAddr(office)); got != tc.banned {
				info, _ := h.e.Inspect(bg, mustAddr(office))
				t.Errorf("banned = %v, want %v (%+v)", got, tc.banned, info)
			}
		})
	}
}

// spread emits n failures spread round-robin over users 100..100+users-1.
func spread(h *harness, service string, users, n int) {
	for i := range n {
		h.emitN(userFail(office, service, fmt.Sprintf("%d", 100+i%users)), 1)
	}
}

func TestNATMemoryBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSources = 1000
	cfg.NATMaxFactor = 3
	h := newHarness(t, cfg)
	for i := range 5000 {
		a := fmt.Sprintf("10.%d.%d.1", i/256, i%256)
		for u := range 5 {
			h.e.Emit(success(a, "pbx", fmt.Sprint(u)))
		}
		h.clock.Advance(time.Millisecond)
	}
	users, sources := 0, 0
	for _, sh := range h.e.shards {
		sh.mu.Lock()
		users += sh.natUsers
		sources += len(sh.nat)
		for _, ns := range sh.natList {
			if len(ns.users) > 3 {
				t.Errorf("%d users at one address, NATMaxFactor 3", len(ns.users))
			}
		}
		sh.mu.Unlock()
	}
	if users > cfg.MaxSources || sources*3 < users {
		t.Errorf("%d known users at %d addresses, cap %d", users, sources, cfg.MaxSources)
	}
	// Pruning forgets them all after NATWindow.
	h.clock.Advance(time.Hour + time.Second)
	h.e.prune(bg)
	for _, sh := range h.e.shards {
		if len(sh.nat) != 0 || sh.natUsers != 0 || len(sh.natList) != 0 {
			t.Fatalf("prune left %d addresses, %d users", len(sh.nat), sh.natUsers)
		}
	}
}

func TestNATManyUsersIndex(t *testing.T) {
	// Past natIndexFrom users an address keeps an index; replacement and
	// pruning must keep it right.
	cfg := testConfig()
	cfg.NATMaxFactor = 50
	h := newHarness(t, cfg)
	officeUsers(h, "pbx", 40)
	h.clock.Advance(time.Minute)
	officeUsers(h, "pbx", 80) // 100..139 refreshed, 140..149 added, then 150..179 replace the oldest
	_, sh := h.e.cshardOf(hashAddr(mustAddr(office), h.e.seed))
	sh.mu.Lock()
	ns := sh.nat[mustAddr(office).As16()]
	if len(ns.users) != 50 || ns.idx == nil || len(ns.idx) != 50 {
		t.Fatalf("users %d idx %d", len(ns.users), len(ns.idx))
	}
	for i, u := range ns.users {
		if ns.idx[u.h] != int32(i) || ns.find(u.h) != i {
			t.Fatalf("index wrong for user %d", i)
		}
	}
	sh.mu.Unlock()
	// User 179 is known (its failures are held against 10×50).
	h.emitN(userFail(office, "pbx", "179"), 10)
	spread(h, "pbx", 40, 0)
	if !h.e.Allowed(mustAddr(office)) {
		t.Fatal("banned")
	}
	if info, _ := h.e.Inspect(bg, mustAddr(office)); info.KnownUsers != 50 || info.Threshold != 500 {
		t.Errorf("%+v", info)
	}
}
