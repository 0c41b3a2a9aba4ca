package fraud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

var bg = context.Background()

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want []string // substrings of the error, all present
	}{
		{"zero threshold", func(c *Config) { c.Threshold = 0 }, []string{"Threshold must be positive"}},
		{"durations", func(c *Config) { c.BanFor, c.RecidiveWindow, c.NATWindow = 0, -1, 0 },
			[]string{"BanFor must be", "RecidiveWindow must be", "NATWindow must be"}},
		{"max below for", func(c *Config) { c.BanMax = time.Minute }, []string{"BanMax (1m0s) is shorter than BanFor (30m0s)"}},
		{"counts", func(c *Config) { c.MaxSources, c.NATMaxFactor = 0, -3 },
			[]string{"MaxSources must be positive", "NATMaxFactor must be positive"}},
		{"weights", func(c *Config) {
			c.KindWeights[event.RejectedByGateway] = -1
			c.ReasonWeights["x\nevil"] = 5000
		}, []string{"KindWeights[rejected_by_gateway] = -1", `ReasonWeights["x\\nevil"] = 5000`}},
		{"whitelist", func(c *Config) { c.Whitelist = []netip.Prefix{{}} }, []string{"Whitelist[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.mod(&cfg)
			_, err := New(cfg, store.NewMemory(), Options{})
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("New error = %v, want ErrInvalid", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := New(testConfig(), nil, Options{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("New with nil store: %v, want ErrInvalid", err)
	}
	if _, err := New(testConfig(), store.NewMemory(), Options{}); err != nil {
		t.Errorf("New with a valid config: %v", err)
	}
}

func TestWindow(t *testing.T) {
	type step struct {
		at time.Duration // clock offset from t0
		n  int           // events at that time
	}
	for _, tc := range []struct {
		name   string
		steps  []step
		banned bool
	}{
		{"ten in a burst", []step{{0, 10}}, false},
		{"eleventh bans", []step{{0, 10}, {time.Second, 1}}, true},
		{"spread over a minute and more", []step{{0, 5}, {30 * time.Second, 5}, {61 * time.Second, 1}}, false},
		{"within 55 s", []step{{0, 6}, {55 * time.Second, 5}}, true},
		{"one per 6 s never", []step{{0, 1}, {6 * time.Second, 1}, {12 * time.Second, 1}, {18 * time.Second, 1},
			{24 * time.Second, 1}, {30 * time.Second, 1}, {36 * time.Second, 1}, {42 * time.Second, 1},
			{48 * time.Second, 1}, {54 * time.Second, 1}, {60 * time.Second, 1}, {66 * time.Second, 1},
			{72 * time.Second, 1}}, false},
		{"clock steps back", []step{{time.Minute, 6}, {0, 5}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, testConfig())
			for _, s := range tc.steps {
				h.clock.AdvanceTo(s.at)
				h.emitN(fail("192.0.2.1"), s.n)
			}
			if got := !h.e.Allowed(mustAddr("192.0.2.1")); got != tc.banned {
				t.Fatalf("banned = %v, want %v", got, tc.banned)
			}
			_, stored := h.blacklisted(t, "192.0.2.1/32")
			if stored != tc.banned {
				t.Errorf("entry in store = %v, want %v", stored, tc.banned)
			}
			if n := len(h.log.lines(t, "source banned")); n != map[bool]int{true: 1}[tc.banned] {
				t.Errorf("%d \"source banned\" lines", n)
			}
			if !h.e.Allowed(mustAddr("192.0.2.2")) {
				t.Error("another address is refused")
			}
		})
	}
}

func TestBanEntry(t *testing.T) {
	ring := event.NewRing(100)
	h := newHarness(t, testConfig(), func(o *Options) {
		o.Recent = func(src netip.Addr, since time.Time, max int) []event.Event {
			return ring.Recent(event.Filter{Source: hostPrefix(src), Since: since}, max)
		}
	})
	sink := event.Fanout{ring, h.e}
	src := "198.51.100.7"
	ev := fail(src)
	ev.User = "alice\n\x1b[31m"
	emit := func(ev event.Event) {
		ev.Time = h.clock.Now()
		sink.Emit(ev)
		h.clock.Advance(2 * time.Second)
	}
	// Noise from another source and an old event of this one (outside the
	// window) must not show up in the reason.
	emit(fail("198.51.100.8"))
	emit(ev)
	h.clock.Advance(2 * time.Minute)
	for range 8 {
		emit(ev)
	}
	deny := event.Event{Kind: event.RejectedByGateway, Source: mustAddr(src), Listener: "web",
		Proto: "http", Reason: event.ReasonDeniedPath, Detail: "GET /login.php"}
	emit(deny)
	emit(event.Event{Kind: event.Success, Source: mustAddr(src), Reason: event.ReasonOK}) // not evidence
	emit(ev)
	emit(deny)
	first := t0.Add(2*time.Second + 2*time.Minute + 2*time.Second)

	if h.e.Allowed(mustAddr(src)) {
		t.Fatal("source not banned after 11 events")
	}
	got, ok := h.blacklisted(t, src+"/32")
	if !ok {
		t.Fatal("no store entry")
	}
	wantReason := "11 weighted events in 1m (threshold 10): rejected_by_service/status ×9, rejected_by_gateway/denied_path ×2"
	if got.Reason != wantReason {
		t.Errorf("Reason = %q\nwant     %q", got.Reason, wantReason)
	}
	if got.Origin != store.Auto || got.Level != 1 || got.Count != 11 {
		t.Errorf("Origin, Level, Count = %s, %d, %d; want auto, 1, 11", got.Origin, got.Level, got.Count)
	}
	banAt := h.clock.Now().Add(-2 * time.Second)
	if !got.Created.Equal(banAt) || !got.Expires.Equal(banAt.Add(30*time.Minute)) {
		t.Errorf("Created %v Expires %v, want %v and +30m", got.Created, got.Expires, banAt)
	}
	if !got.FirstSeen.Equal(first) || !got.LastSeen.Equal(banAt) {
		t.Errorf("FirstSeen %v LastSeen %v, want %v and %v", got.FirstSeen, got.LastSeen, first, banAt)
	}
	if len(got.Evidence) != 11 { // this source's 11 weighted events in the window, not the old one
		t.Fatalf("%d evidence lines, want 11:\n%s", len(got.Evidence), strings.Join(got.Evidence, "\n"))
	}
	wantLine := fmt.Sprintf(`%s rejected_by_service status listener=web service=portal user=alice\n\x1b[31m detail=401`,
		first.Format(time.RFC3339))
	if got.Evidence[0] != wantLine {
		t.Errorf("evidence line\n got %q\nwant %q", got.Evidence[0], wantLine)
	}
	if want := `rejected_by_gateway denied_path listener=web detail="GET /login.php"`; !strings.HasSuffix(got.Evidence[10], want) {
		t.Errorf("last evidence line %q does not end with %q", got.Evidence[10], want)
	}
	lines := h.log.lines(t, "source banned")
	if len(lines) != 1 {
		t.Fatalf("%d ban log lines, want 1", len(lines))
	}
	l := lines[0]
	if l["src"] != src || l["level"] != float64(1) || l["reason"] != wantReason || l["level"] == nil || l["for"] == nil {
		t.Errorf("log line %v", l)
	}
	if strings.Contains(h.log.String(), "\x1b") {
		t.Error("raw attacker text in the log")
	}
	st := h.e.Stats()
	if st.AutoBans != 1 || st.Blacklisted != 1 || st.EventsCounted != 13 {
		t.Errorf("stats %+v", st)
	}
}

func TestWeights(t *testing.T) {
	unreachable := event.Event{Kind: event.BackendUnreachable, Source: mustAddr("192.0.2.9"), Reason: event.ReasonDial}
	denied := event.Event{Kind: event.RejectedByGateway, Source: mustAddr("192.0.2.9"), Reason: event.ReasonDeniedPath}
	challenge := event.Event{Kind: event.RejectedByService, Source: mustAddr("192.0.2.9"), Reason: "auth_challenge"}
	for _, tc := range []struct {
		name    string
		reasons map[string]int
		ev      event.Event
		n       int
		banned  bool
		counted uint64
	}{
		{"kind weight 0 ignored", nil, unreachable, 100, false, 0},
		{"success never counts", map[string]int{event.ReasonOK: 5}, success("192.0.2.9", "pbx", "bob"), 100, false, 0},
		{"unknown kind ignored", nil, event.Event{Kind: 77, Source: mustAddr("192.0.2.9")}, 100, false, 0},
		{"reason overrides up", map[string]int{event.ReasonDeniedPath: 5}, denied, 3, true, 3},
		{"reason overrides to zero", map[string]int{"auth_challenge": 0}, challenge, 50, false, 0},
		{"reason overrides kind 0", map[string]int{event.ReasonDial: 2}, unreachable, 6, true, 6},
		{"other reason keeps kind weight", map[string]int{event.ReasonDeniedPath: 5}, challenge, 10, false, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.ReasonWeights = tc.reasons
			h := newHarness(t, cfg)
			h.emitN(tc.ev, tc.n)
			if got := !h.e.Allowed(mustAddr("192.0.2.9")); got != tc.banned {
				t.Errorf("banned = %v, want %v", got, tc.banned)
			}
			st := h.e.Stats()
			if st.EventsCounted != tc.counted || st.EventsSeen != uint64(tc.n) || st.EventsCounted+st.EventsIgnored != st.EventsSeen {
				t.Errorf("seen %d counted %d ignored %d, want %d counted", st.EventsSeen, st.EventsCounted, st.EventsIgnored, tc.counted)
			}
		})
	}
}

func TestDisabledCountsNothing(t *testing.T) {
	cfg := testConfig()
	cfg.Enabled = false
	h := newHarness(t, cfg)
	h.emitN(fail("192.0.2.1"), 50)
	if !h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Fatal("disabled engine banned")
	}
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.1/32"), 0, ""); err != nil {
		t.Fatal(err)
	}
	if h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Fatal("manual ban not enforced with counting disabled")
	}
}

func TestIgnoredWhileBanned(t *testing.T) {
	h := newHarness(t, testConfig())
	h.emitN(fail("192.0.2.1"), 11)
	h.emitN(fail("192.0.2.1"), 30)
	st := h.e.Stats()
	if st.AutoBans != 1 || st.EventsIgnored != 30 || st.EventsCounted != 11 {
		t.Fatalf("stats %+v", st)
	}
	if st.Sources != 0 {
		t.Errorf("banned source still counted: Sources = %d", st.Sources)
	}
}

// banOnce makes src's next ban and returns its entry.
func (h *harness) banOnce(t *testing.T, src string) store.Entry {
	t.Helper()
	h.emitN(fail(src), 11)
	if h.e.Allowed(mustAddr(src)) {
		t.Fatalf("%s not banned at %v", src, h.clock.Since0())
	}
	e, ok := h.blacklisted(t, src+"/32")
	if !ok {
		t.Fatal("no store entry")
	}
	return e
}

func TestEscalation(t *testing.T) {
	h := newHarness(t, testConfig())
	src := "203.0.113.5"
	want := []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour,
		16 * time.Hour, 24 * time.Hour, 24 * time.Hour}
	for i, d := range want {
		e := h.banOnce(t, src)
		if got := e.Expires.Sub(e.Created); got != d || e.Level != i+1 {
			t.Errorf("ban %d: %s level %d, want %s level %d", i+1, got, e.Level, d, i+1)
		}
		h.clock.Set(e.Expires)
		if !h.e.Allowed(mustAddr(src)) {
			t.Fatalf("ban %d: still refused at expiry", i+1)
		}
		h.e.sweep(bg)
	}
	// A quiet RecidiveWindow resets the escalation.
	h.clock.Advance(7*24*time.Hour + time.Second)
	if e := h.banOnce(t, src); e.Level != 1 || e.Expires.Sub(e.Created) != 30*time.Minute {
		t.Errorf("after the recidive window: level %d for %s, want 1 for 30m", e.Level, e.Expires.Sub(e.Created))
	}
}

func TestBanDuration(t *testing.T) {
	c := Config{BanFor: time.Minute, BanMax: time.Duration(1<<63 - 1)}
	for level, want := range map[int]time.Duration{0: time.Minute, 1: time.Minute, 3: 4 * time.Minute, 1 << 30: c.BanMax} {
		if got := banDuration(&c, level); got != want {
			t.Errorf("level %d: %s, want %s", level, got, want)
		}
	}
}

func TestExpiry(t *testing.T) {
	h := newHarness(t, testConfig())
	src := mustAddr("2001:db8::1")
	h.emitN(fail(src.String()), 11)
	if h.e.Allowed(src) {
		t.Fatal("not banned")
	}
	h.clock.Advance(30*time.Minute - time.Nanosecond)
	if h.e.Allowed(src) {
		t.Fatal("allowed before expiry")
	}
	h.e.sweep(bg)
	if _, ok := h.blacklisted(t, "2001:db8::1/128"); !ok {
		t.Fatal("sweep removed an entry in force")
	}
	h.clock.Advance(time.Nanosecond)
	if !h.e.Allowed(src) {
		t.Fatal("refused at expiry, before the sweep")
	}
	if n := h.e.Stats().Blacklisted; n != 1 {
		t.Fatalf("Blacklisted = %d before the sweep", n)
	}
	h.e.sweep(bg)
	if _, ok := h.blacklisted(t, "2001:db8::1/128"); ok {
		t.Error("sweep left the expired entry in the store")
	}
	lines := h.log.lines(t, "source unbanned")
	if len(lines) != 1 || lines[0]["reason"] != "expired" || lines[0]["src"] != "2001:db8::1/128" {
		t.Errorf("unban log lines %v", lines)
	}
	if st := h.e.Stats(); st.Unbans != 1 || st.Blacklisted != 0 {
		t.Errorf("stats %+v", st)
	}
	// The expired ban does not count as "already banned": counting resumes.
	h.emitN(fail(src.String()), 11)
	if h.e.Allowed(src) {
		t.Error("not banned again")
	}
}

func TestStoreFailureKeepsBan(t *testing.T) {
	h := newHarness(t, testConfig())
	h.st.failWrites.Store(true)
	h.emitN(fail("192.0.2.1"), 11)
	if h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Fatal("ban not in force when the store fails")
	}
	st := h.e.Stats()
	if st.StoreErrors != 1 || st.AutoBans != 1 { // one write for history and entry
		t.Errorf("stats %+v", st)
	}
	if n := len(h.log.lines(t, "store write bans failed")); n != 1 {
		t.Errorf("%d store error lines, want 1", n)
	}
	// The first ban's duration applies (level unknown).
	h.clock.Advance(30 * time.Minute)
	if !h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("in-memory ban did not expire after BanFor")
	}
	// Unban works on a ban that only memory knows.
	h.st.failWrites.Store(false)
	h.clock.Set(t0.Add(time.Hour))
	h.emitN(fail("192.0.2.2"), 11)
	h.st.Store.Delete(bg, store.Blacklist, mustPrefix("192.0.2.2/32"))
	_, found, err := h.e.Unban(bg, mustPrefix("192.0.2.2/32"))
	if err != nil || !found || !h.e.Allowed(mustAddr("192.0.2.2")) {
		t.Errorf("Unban of a memory-only ban: found %v err %v", found, err)
	}
}

// TestBanWaveFewWrites: a lone ban is written at once; the bans of a wave
// that follows go to the store together, not one write each.
func TestBanWaveFewWrites(t *testing.T) {
	h := newHarness(t, testConfig())
	h.e.banEvery = banCommitEvery
	h.emitN(fail("192.0.2.1"), 11)
	if err := h.e.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if n := h.st.banWrites.Load(); n != 1 {
		t.Fatalf("%d writes for the lone ban", n)
	}
	const wave = 200
	for i := range wave {
		ev := fail(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}).String())
		ev.Time = h.clock.Now()
		for range 11 {
			h.e.Emit(ev)
		}
	}
	if err := h.e.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if n := h.st.banWrites.Load() - 1; n < 1 || n > 3 {
		t.Errorf("%d store writes for a wave of %d bans, want 1 to 3", n, wave)
	}
	if n, _ := h.st.Count(bg, store.Blacklist); n != wave+1 {
		t.Errorf("%d bans stored, want %d", n, wave+1)
	}
	if n := len(h.log.lines(t, "source banned")); n != wave+1 {
		t.Errorf("%d ban lines, want %d", n, wave+1)
	}
}

func TestManualBanStoreFailure(t *testing.T) {
	h := newHarness(t, testConfig())
	h.st.failWrites.Store(true)
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.0/24"), time.Hour, ""); !errors.Is(err, errFlaky) {
		t.Fatalf("Ban error %v, want the store's", err)
	}
	if !h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("a failed manual ban is enforced")
	}
}

func TestOnBanOrder(t *testing.T) {
	var h *harness
	var calls []netip.Prefix
	h = newHarness(t, testConfig(), func(o *Options) {
		o.OnBan = func(p netip.Prefix) {
			calls = append(calls, p)
			if h.e.Allowed(p.Addr()) {
				t.Error("OnBan before the ban is in force")
			}
			// A manual ban is durable before OnBan; an automatic one is
			// closed at once and written by the ban writers afterwards.
			_, durable, _ := h.st.Get(bg, store.Blacklist, p)
			if manual := p != mustPrefix("192.0.2.1/32"); durable != manual {
				t.Errorf("OnBan(%s): in the store = %v", p, durable)
			}
			if n := len(h.log.lines(t, "source banned")); n != len(calls)-1 {
				t.Error("logged before OnBan")
			}
		}
	})
	h.emitN(fail("192.0.2.1"), 11)
	if _, ok := h.blacklisted(t, "192.0.2.1/32"); !ok {
		t.Error("automatic ban not written after Flush")
	}
	if _, err := h.e.Ban(bg, mustPrefix("2001:db8::/48"), 0, "noisy"); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0] != mustPrefix("192.0.2.1/32") || calls[1] != mustPrefix("2001:db8::/48") {
		t.Errorf("OnBan calls %v", calls)
	}
}

func TestWhitelistPrecedence(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = []netip.Prefix{mustPrefix("10.0.0.5/32"), mustPrefix("::ffff:10.9.0.0/112")}
	h := newHarness(t, cfg)
	if _, err := h.e.Ban(bg, mustPrefix("10.0.0.0/8"), 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := h.e.Ban(bg, mustPrefix("10.0.0.5/32"), 0, ""); err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{
		"10.0.0.5": true, "::ffff:10.0.0.5": true, "10.9.3.4": true, // whitelisted (mapped config prefix unmapped)
		"10.0.0.6": false, "10.200.0.1": false, "11.0.0.1": true,
	} {
		if got := h.e.Allowed(mustAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
	// Whitelisted sources are never counted.
	h.emitN(fail("10.0.0.5"), 100)
	if st := h.e.Stats(); st.EventsCounted != 0 || st.Sources != 0 {
		t.Errorf("whitelisted source counted: %+v", st)
	}

	// A run-time entry with an expiry.
	h2 := newHarness(t, testConfig())
	if _, err := h2.e.Allow(bg, mustPrefix("192.0.2.0/24"), time.Hour, "office"); err != nil {
		t.Fatal(err)
	}
	h2.emitN(fail("192.0.2.7"), 20)
	if !h2.e.Allowed(mustAddr("192.0.2.7")) {
		t.Fatal("whitelisted source banned")
	}
	h2.clock.Advance(time.Hour)
	h2.emitN(fail("192.0.2.7"), 11)
	if h2.e.Allowed(mustAddr("192.0.2.7")) {
		t.Error("expired whitelist entry still protects")
	}
	h2.e.sweep(bg)
	if _, ok, _ := h2.st.Get(bg, store.Whitelist, mustPrefix("192.0.2.0/24")); ok {
		t.Error("sweep left the expired whitelist entry")
	}
	if len(h2.log.lines(t, "whitelist entry expired")) != 1 {
		t.Error("no log line for the expired whitelist entry")
	}
}

func TestNestedExpiry(t *testing.T) {
	h := newHarness(t, testConfig())
	must := func(_ store.Entry, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(h.e.Ban(bg, mustPrefix("10.0.0.0/16"), 0, ""))
	must(h.e.Ban(bg, mustPrefix("10.0.5.0/24"), time.Minute, ""))
	must(h.e.Allow(bg, mustPrefix("172.16.0.0/12"), 0, ""))
	must(h.e.Allow(bg, mustPrefix("172.16.1.0/24"), time.Minute, ""))
	must(h.e.Ban(bg, mustPrefix("172.16.0.0/16"), 0, ""))
	h.clock.Advance(time.Minute)
	// The more specific entries expired; the wider ones still apply.
	if h.e.Allowed(mustAddr("10.0.5.1")) {
		t.Error("expired /24 hides the /16 ban")
	}
	if !h.e.Allowed(mustAddr("172.16.1.1")) {
		t.Error("expired /24 whitelist hides the /12 one")
	}
	info, err := h.e.Inspect(bg, mustAddr("10.0.5.1"))
	if err != nil || info.Blacklisted == nil || info.Blacklisted.Prefix != mustPrefix("10.0.0.0/16") {
		t.Errorf("Inspect %+v %v", info, err)
	}
}

func TestCIDR(t *testing.T) {
	h := newHarness(t, testConfig())
	for _, p := range []string{"192.0.2.0/24", "2001:db8:1::/64", "::ffff:198.51.100.0/120"} {
		if _, err := h.e.Ban(bg, mustPrefix(p), time.Hour, ""); err != nil {
			t.Fatalf("Ban %s: %v", p, err)
		}
	}
	for i := range 256 {
		if a := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}); h.e.Allowed(a) {
			t.Fatalf("%s inside the banned /24 allowed", a)
		}
		if a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}); h.e.Allowed(a) {
			t.Fatalf("%s inside the mapped /120 (= /24) allowed", a)
		}
	}
	for addr, want := range map[string]bool{
		"192.0.3.0": true, "192.0.1.255": true, "::ffff:192.0.2.9": false,
		"2001:db8:1::1": false, "2001:db8:1:0:ffff:ffff:ffff:ffff": false, "2001:db8:1:1::": true,
		"198.51.101.1": true,
	} {
		if got := h.e.Allowed(mustAddr(addr)); got != want {
			t.Errorf("Allowed(%s) = %v, want %v", addr, got, want)
		}
	}
	if _, ok := h.blacklisted(t, "198.51.100.0/24"); !ok {
		t.Error("mapped prefix not stored as IPv4")
	}
	if st := h.e.Stats(); st.Blacklisted != 3 || st.ManualBans != 3 || st.Refused == 0 {
		t.Errorf("stats %+v", st)
	}
	// Invalid arguments.
	if _, err := h.e.Ban(bg, netip.Prefix{}, 0, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Ban(invalid prefix) = %v", err)
	}
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.0/24"), -time.Second, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("Ban(negative duration) = %v", err)
	}
	// A manual ban replaces an automatic one with the same key, forever.
	h.emitN(fail("203.0.113.1"), 11)
	e, err := h.e.Ban(bg, mustPrefix("203.0.113.1/32"), 0, "keep out")
	if err != nil || !e.Expires.IsZero() || e.Origin != store.Manual || e.Note != "keep out" {
		t.Fatalf("Ban = %+v, %v", e, err)
	}
	h.clock.Advance(1000 * time.Hour)
	h.e.sweep(bg)
	if h.e.Allowed(mustAddr("203.0.113.1")) {
		t.Error("forever ban expired")
	}
	if h.e.Allowed(mustAddr("192.0.2.1")) == false {
		t.Error("1h ban did not expire")
	}
}

func TestAllowLiftsBan(t *testing.T) {
	h := newHarness(t, testConfig())
	h.emitN(fail("192.0.2.10"), 11)
	h.emitN(fail("192.0.2.11"), 11)
	for _, p := range []string{"192.0.2.32/28", "192.0.0.0/16", "192.0.3.1/32"} {
		if _, err := h.e.Ban(bg, mustPrefix(p), 0, ""); err != nil {
			t.Fatal(err)
		}
	}
	// One step: a single address.
	ent, err := h.e.Allow(bg, mustPrefix("192.0.2.10/32"), 0, "customer called")
	if err != nil || ent.List != store.Whitelist || ent.Note != "customer called" {
		t.Fatalf("Allow = %+v, %v", ent, err)
	}
	if !h.e.Allowed(mustAddr("192.0.2.10")) {
		t.Error("still refused after Allow")
	}
	if _, ok := h.blacklisted(t, "192.0.2.10/32"); ok {
		t.Error("automatic ban left in the store")
	}
	if lines := h.log.lines(t, "source unbanned"); len(lines) != 1 || lines[0]["reason"] != "whitelisted" {
		t.Errorf("unban lines %v", lines)
	}
	// A network lifts the entries inside it, not the wider one.
	if _, err := h.e.Allow(bg, mustPrefix("192.0.2.0/24"), 0, ""); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{"192.0.2.11/32": false, "192.0.2.32/28": false, "192.0.0.0/16": true, "192.0.3.1/32": true} {
		if _, ok := h.blacklisted(t, p); ok != want {
			t.Errorf("after Allow /24: %s in store = %v, want %v", p, ok, want)
		}
	}
	if !h.e.Allowed(mustAddr("192.0.2.200")) || h.e.Allowed(mustAddr("192.0.4.1")) {
		t.Error("whitelist /24 inside a banned /16: wrong answers")
	}
	if st := h.e.Stats(); st.Unbans != 3 || st.Whitelisted != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestUnbanForgetsCounters(t *testing.T) {
	h := newHarness(t, testConfig())
	src := "192.0.2.1"
	h.emitN(fail(src), 11)
	ent, found, err := h.e.Unban(bg, mustPrefix(src+"/32"))
	if err != nil || !found || ent.Origin != store.Auto {
		t.Fatalf("Unban = %+v, %v, %v", ent, found, err)
	}
	if lines := h.log.lines(t, "source unbanned"); len(lines) != 1 || lines[0]["reason"] != "operator" {
		t.Errorf("unban lines %v", lines)
	}
	h.emitN(fail(src), 1)
	if !h.e.Allowed(mustAddr(src)) {
		t.Fatal("re-banned by one event after Unban")
	}
	// Counters below the threshold are forgotten too.
	h.emitN(fail(src), 8) // score 9
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.0/24"), 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, found, err := h.e.Unban(bg, mustPrefix("192.0.2.0/24")); !found || err != nil {
		t.Fatal("Unban of the /24 found nothing")
	}
	if info, _ := h.e.Inspect(bg, mustAddr(src)); info.Score != 0 {
		t.Errorf("score %d after Unban of the covering network", info.Score)
	}
	h.emitN(fail(src), 10)
	if !h.e.Allowed(mustAddr(src)) {
		t.Error("banned by forgotten events")
	}
	if _, found, err := h.e.Unban(bg, mustPrefix("203.0.113.0/24")); found || err != nil {
		t.Errorf("Unban of nothing: %v %v", found, err)
	}
}

func TestDisallow(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = []netip.Prefix{mustPrefix("10.0.0.0/8")}
	h := newHarness(t, cfg)
	if _, _, err := h.e.Disallow(bg, mustPrefix("10.0.0.0/8")); !errors.Is(err, ErrConfigEntry) {
		t.Errorf("Disallow(config entry) = %v", err)
	}
	if _, err := h.e.Allow(bg, mustPrefix("192.0.2.0/24"), 0, ""); err != nil {
		t.Fatal(err)
	}
	if _, found, err := h.e.Disallow(bg, mustPrefix("192.0.2.0/24")); !found || err != nil {
		t.Fatalf("Disallow: %v %v", found, err)
	}
	h.emitN(fail("192.0.2.1"), 11)
	if h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("still whitelisted after Disallow")
	}
	if _, found, _ := h.e.Disallow(bg, mustPrefix("192.0.2.0/24")); found {
		t.Error("second Disallow found an entry")
	}
}

func TestEntries(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = []netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("10.0.0.0/8")}
	h := newHarness(t, cfg)
	h.e.Allow(bg, mustPrefix("192.0.2.0/24"), time.Minute, "temp")
	h.e.Allow(bg, mustPrefix("10.0.0.0/8"), 0, "duplicate of the config")
	h.e.Ban(bg, mustPrefix("198.51.100.0/24"), 0, "")
	h.e.Ban(bg, mustPrefix("203.0.113.1/32"), time.Minute, "")
	h.clock.Advance(time.Minute)

	wl, err := h.e.Entries(bg, store.Whitelist)
	if err != nil {
		t.Fatal(err)
	}
	if len(wl) != 1 || wl[0].Prefix != mustPrefix("10.0.0.0/8") || wl[0].Note != "configuration file" || wl[0].Origin != store.Manual {
		t.Errorf("whitelist %+v", wl)
	}
	bl, err := h.e.Entries(bg, store.Blacklist)
	if err != nil {
		t.Fatal(err)
	}
	if len(bl) != 1 || bl[0].Prefix != mustPrefix("198.51.100.0/24") {
		t.Errorf("blacklist %+v", bl)
	}
	if _, err := h.e.Entries(bg, 9); !errors.Is(err, ErrInvalid) {
		t.Errorf("Entries(9) = %v", err)
	}
}

func TestInspect(t *testing.T) {
	cfg := testConfig()
	cfg.Whitelist = []netip.Prefix{mustPrefix("10.0.0.0/8")}
	h := newHarness(t, cfg)
	src := "192.0.2.1"
	h.e.Emit(success(src, "pbx", "100"))
	h.e.Emit(success(src, "pbx", "101"))
	h.emitN(fail(src), 3)
	h.clock.Advance(5 * time.Second)
	h.emitN(fail(src), 2)

	info, err := h.e.Inspect(bg, mustAddr("::ffff:"+src))
	if err != nil {
		t.Fatal(err)
	}
	want := SourceInfo{Addr: mustAddr(src), Allowed: true, Score: 5, Threshold: 20, KnownUsers: 2, LastSeen: t0.Add(5 * time.Second)}
	if info != want {
		t.Errorf("Inspect = %+v\nwant      %+v", info, want)
	}

	h.emitN(fail("192.0.2.2"), 11)
	refused := h.e.Stats().Refused
	info, _ = h.e.Inspect(bg, mustAddr("192.0.2.2"))
	if info.Allowed || info.Blacklisted == nil || !strings.HasPrefix(info.Blacklisted.Reason, "11 weighted events") || info.Score != 0 {
		t.Errorf("banned source: %+v", info)
	}
	h.e.Ban(bg, mustPrefix("10.1.0.0/16"), 0, "")
	info, _ = h.e.Inspect(bg, mustAddr("10.1.2.3"))
	if !info.Allowed || info.Whitelisted == nil || info.Whitelisted.Note != "configuration file" ||
		info.Blacklisted == nil || info.Blacklisted.Prefix != mustPrefix("10.1.0.0/16") {
		t.Errorf("whitelisted inside a ban: %+v", info)
	}
	if n := h.e.Stats().Refused; n != refused {
		t.Errorf("Inspect counted %d refusals", n-refused)
	}
	if _, err := h.e.Inspect(bg, netip.Addr{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Inspect(zero) = %v", err)
	}
}

func TestReconfigure(t *testing.T) {
	h := newHarness(t, testConfig())
	h.emitN(fail("192.0.2.1"), 8)
	bad := testConfig()
	bad.Threshold = 0
	if err := h.e.Reconfigure(bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Reconfigure(bad) = %v", err)
	}
	cfg := testConfig()
	cfg.Threshold = 5
	cfg.Whitelist = []netip.Prefix{mustPrefix("198.51.100.0/24")}
	h.e.Ban(bg, mustPrefix("198.51.100.1/32"), 0, "")
	if err := h.e.Reconfigure(cfg); err != nil {
		t.Fatal(err)
	}
	if !h.e.Allowed(mustAddr("198.51.100.1")) {
		t.Error("new config whitelist not in force")
	}
	if h.e.Stats().Blacklisted != 1 {
		t.Error("bans lost on reload")
	}
	h.emitN(fail("192.0.2.1"), 1) // 9 > 5: counters kept, new threshold applies
	if h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("counters lost on reload")
	}
}

func TestClosed(t *testing.T) {
	h := newHarness(t, testConfig())
	if err := h.e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.0/24"), 0, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Ban after Close = %v", err)
	}
	if err := h.e.Run(bg); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v", err)
	}
	h.emitN(fail("192.0.2.1"), 20)
	if !h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("closed engine banned")
	}
}

func TestZonedAndMappedSources(t *testing.T) {
	h := newHarness(t, testConfig())
	ev := fail("fe80::1%eth0")
	h.emitN(ev, 6)
	h.emitN(fail("fe80::1"), 5)
	if h.e.Allowed(mustAddr("fe80::1")) || h.e.Allowed(mustAddr("fe80::1%eth1")) {
		t.Error("zoned source not banned as its address")
	}
	if _, ok := h.blacklisted(t, "fe80::1/128"); !ok {
		t.Error("no entry for fe80::1/128")
	}
	h.emitN(fail("::ffff:192.0.2.1"), 6)
	h.emitN(fail("192.0.2.1"), 5)
	if h.e.Allowed(mustAddr("192.0.2.1")) {
		t.Error("mapped and plain forms counted apart")
	}
}

// TestOnLift: Unban and Allow tell the gateway which sources the operator
// cleared, so it can forget what else it holds against them.
func TestOnLift(t *testing.T) {
	var lifted []string
	h := newHarness(t, testConfig(), func(o *Options) {
		o.OnLift = func(p netip.Prefix) { lifted = append(lifted, p.String()) }
	})
	if _, err := h.e.Ban(bg, mustPrefix("192.0.2.7/32"), 0, ""); err != nil {
		t.Fatal(err)
	}
	h.e.Unban(bg, mustPrefix("192.0.2.7/32"))
	h.e.Unban(bg, mustPrefix("192.0.2.8/32")) // nothing banned: still lifted (a SIP flood block)
	h.e.Allow(bg, mustPrefix("198.51.100.0/24"), 0, "")
	if want := []string{"192.0.2.7/32", "192.0.2.8/32", "198.51.100.0/24"}; !slices.Equal(lifted, want) {
		t.Errorf("lifted %v, want %v", lifted, want)
	}
}
