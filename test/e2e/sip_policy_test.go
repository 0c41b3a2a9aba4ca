package e2e

import (
	"strings"
	"testing"
	"time"
)

// The SIP edge policy through the real binary, over UDP, with sipp as the
// phones and the PBX stand-in: call limits, roadwarriors and the company IP
// filter, anti-flood, scanner User-Agents, and REGISTER brute force ending
// in a ban. Every test has its own gateway and source addresses, so none
// shares flood, call or fraud state with another.

// sipCall is one outgoing call (scenario invite.xml or invite_refused.xml)
// from user@domain at the address ip to the number or extension to.
func sipCall(scenario, remote, ip, domain, user, to string) sippArgs {
	return sippArgs{scenario: scenario, remote: remote, ip: ip, calls: 1,
		keys: map[string]string{"domain": domain, "user": user, "to": to}}
}

// sipRegister is one REGISTER (scenario register.xml, register_refused.xml
// or register_auth.xml) of user@domain from the address ip.
func sipRegister(scenario, remote, ip, domain, user string) sippArgs {
	return sippArgs{scenario: scenario, remote: remote, ip: ip, calls: 1,
		keys: map[string]string{"domain": domain, "user": user, "ua": "Yealink SIP-T46S 66.86.0.15"}}
}

// expectDetail fails the test unless the event line's detail contains want.
func expectDetail(t testing.TB, l logLine, want string) {
	t.Helper()
	if !strings.Contains(l["detail"], want) {
		t.Errorf("event %v: detail %q, want it to contain %q", l, l["detail"], want)
	}
}

const sipCallLimitsConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
services:
  - {name: pbx, protocol: sip, backend: {address: "{{.PBX}}"}}
  - {name: pbx-home, protocol: sip, backend: {address: "{{.Home}}"}}
sip:
  brands:
    - name: b1
      max_calls: 2
      companies:
        - {name: c1, service: pbx, domains: [c1.example.com], max_calls: 3, blocked_destinations: ['^00882']}
        - {name: c1-home, service: pbx-home, domains: [home.c1.example.com]}
    - name: b2
      max_calls: 0
      companies:
        - {name: c2, service: pbx, domains: [c2.example.com], max_calls: 0}
    - name: b3
      companies:
        - {name: c3, service: pbx, domains: [c3.example.com], max_calls: 1}
admin:
  address: {{.Admin}}
`

// TestSIPCallLimits holds calls up to the brand's and a company's
// max_calls and checks what the next call gets: 403 for an outgoing one,
// 486 (seen by the PBX) for an incoming one; extensions, companies without
// limits and calls after a hang-up pass.
func TestSIPCallLimits(t *testing.T) {
	t.Parallel()
	sipAddr, admin := freeAddr(t), freeAddr(t)
	pbx, home := pbxAddr(t, "127.0.20.100"), pbxAddr(t, "127.0.20.101")
	g := startGateway(t, render(t, sipCallLimitsConfig, map[string]any{
		"SIP": sipAddr, "PBX": pbx, "Home": home, "Admin": admin,
	}))
	p := startSippServer(t, sippArgs{scenario: "pbx.xml", ip: hostOf(pbx), port: portOf(pbx), calls: 100, timeout: 90 * time.Second})

	// Calls held long enough for every check below; each check takes well
	// under a second.
	const hold = 15 * time.Second
	a := sipCall("invite.xml", sipAddr, "127.0.20.1", "c1.example.com", "100", "0034911234567")
	a.calls, a.limit, a.rate, a.hold, a.timeout = 2, 2, 100, hold, hold+30*time.Second
	c1 := startSipp(t, a) // brand b1 at its max_calls 2 (company c1 allows 3)
	a = sipCall("invite.xml", sipAddr, "127.0.20.3", "c3.example.com", "300", "612345678")
	a.hold, a.timeout = hold, hold+30*time.Second
	c3 := startSipp(t, a) // company c3 at its max_calls 1 (brand b3 has none)
	waitMetric(t, admin, `pbxgate_sip_calls_external{brand="b1",company="c1"}`, "2")
	waitMetric(t, admin, `pbxgate_sip_calls_external{brand="b3",company="c3"}`, "1")

	t.Run("brand limit before company limit: 403", func(t *testing.T) {
		r := runSipp(t, sipCall("invite_refused.xml", sipAddr, "127.0.20.2", "c1.example.com", "101", "0034911234568"))
		expectCalls(t, r, 1, 0)
		l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "call_limit", "src": "127.0.20.2", "user": "101"})
		expectDetail(t, l, "outgoing call: brand b1 at max_calls")
	})
	t.Run("extensions do not count", func(t *testing.T) {
		r := runSipp(t, sipCall("invite.xml", sipAddr, "127.0.20.2", "c1.example.com", "101", "201"))
		expectCalls(t, r, 1, 0)
		if l := metricLine(t, admin, `pbxgate_sip_calls_external{brand="b1",company="c1"}`); !strings.HasSuffix(l, " 2") {
			t.Errorf("external calls of c1 after an internal call: %q, want 2", l)
		}
	})
	t.Run("blocked destination: 403", func(t *testing.T) {
		r := runSipp(t, sipCall("invite_refused.xml", sipAddr, "127.0.20.2", "c1.example.com", "102", "00882123456"))
		expectCalls(t, r, 1, 0)
		l := g.waitEvent(map[string]string{"reason": "blocked_destination", "src": "127.0.20.2", "user": "102"})
		expectDetail(t, l, `"^00882"`)
	})
	t.Run("company limit: 403", func(t *testing.T) {
		r := runSipp(t, sipCall("invite_refused.xml", sipAddr, "127.0.20.3", "c3.example.com", "301", "612345679"))
		expectCalls(t, r, 1, 0)
		l := g.waitEvent(map[string]string{"reason": "call_limit", "src": "127.0.20.3", "user": "301"})
		expectDetail(t, l, "outgoing call: company c3 at max_calls")
	})
	t.Run("incoming external call over the brand limit: 486 to the PBX", func(t *testing.T) {
		// The phone of c1-home (brand b1) registers; the PBX calls it
		// from an outside number. The gateway answers 486 itself.
		// (The PBX's ACK to that 486 is relayed to the phone today; the
		// phone here has gone by then.)
		p := startSippServer(t, sippArgs{scenario: "pbx_incoming_busy.xml", ip: hostOf(home), port: portOf(home), calls: 1,
			keys: map[string]string{"phone": "150", "caller": "0612345678", "domain": "home.c1.example.com"}})
		r := runSipp(t, sipRegister("register.xml", sipAddr, "127.0.20.4", "home.c1.example.com", "150"))
		expectCalls(t, r, 1, 0)
		pr := p.wait()
		expectCalls(t, pr, 1, 0)
		l := g.waitEvent(map[string]string{"reason": "call_limit", "src": "127.0.20.4", "user": "150"})
		expectDetail(t, l, "incoming call: brand b1 at max_calls")
	})
	t.Run("max_calls 0 is no limit", func(t *testing.T) {
		a := sipCall("invite.xml", sipAddr, "127.0.20.5", "c2.example.com", "200", "0034911230000")
		a.calls, a.limit, a.rate, a.hold = 5, 5, 100, 2*time.Second
		p := startSipp(t, a)
		waitMetric(t, admin, `pbxgate_sip_calls_external{brand="b2",company="c2"}`, "5")
		expectCalls(t, p.wait(), 5, 0)
	})

	// The held calls hang up; their slots are free again.
	expectCalls(t, c1.wait(), 2, 0)
	expectCalls(t, c3.wait(), 1, 0)
	waitMetric(t, admin, `pbxgate_sip_calls_external{brand="b1",company="c1"}`, "0")
	r := runSipp(t, sipCall("invite.xml", sipAddr, "127.0.20.2", "c1.example.com", "101", "0034911234568"))
	expectCalls(t, r, 1, 0)
	if n := g.countEvents(map[string]string{"reason": "call_limit"}); n != 3 {
		t.Errorf("%d call_limit events, want 3 (brand, company, incoming)", n)
	}
	// The refused INVITEs, and the ACKs to the gateway's 403s, never
	// reached the PBX: it saw the 10 calls that passed, nothing else.
	for _, m := range []string{"INVITE ", "ACK ", "BYE "} {
		if n := p.received(m); n != 10 {
			t.Errorf("the PBX received %d %q, want 10 (2+1 held, 1 extension, 5 without limit, 1 after hang-up)", n, m)
		}
	}
}

const sipRoadwarriorConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
services:
  - {name: pbx, protocol: sip, backend: {address: "{{.PBX}}"}}
sip:
  brands:
    - name: b1
      companies:
        - name: c1
          service: pbx
          domains: [c1.example.com]
          allowed_networks: [127.0.0.0/24]
          users: [{name: "rw1", calls_from_other_networks: 1}]
admin:
  address: {{.Admin}}
`

// TestSIPRoadwarrior: company c1 accepts REGISTER and INVITE from
// 127.0.0.0/24 only, except from its roadwarrior rw1, who may register
// from anywhere and hold one call from outside at a time.
func TestSIPRoadwarrior(t *testing.T) {
	t.Parallel()
	sipAddr, admin := freeAddr(t), freeAddr(t)
	pbx := pbxAddr(t, "127.0.21.100")
	g := startGateway(t, render(t, sipRoadwarriorConfig, map[string]any{"SIP": sipAddr, "PBX": pbx, "Admin": admin}))
	startSippServer(t, sippArgs{scenario: "pbx.xml", ip: hostOf(pbx), port: portOf(pbx), calls: 100, timeout: 90 * time.Second})
	const outside, outside2 = "127.0.5.1", "127.0.5.2"
	const domain = "c1.example.com"

	t.Run("roadwarrior registers from outside", func(t *testing.T) {
		expectCalls(t, runSipp(t, sipRegister("register.xml", sipAddr, outside, domain, "rw1")), 1, 0)
	})
	t.Run("roadwarrior: one call from outside at a time", func(t *testing.T) {
		// Calls from outside count whether external or not: an
		// extension is enough.
		a := sipCall("invite.xml", sipAddr, outside, domain, "rw1", "201")
		a.hold, a.timeout = 6*time.Second, 40*time.Second
		held := startSipp(t, a)
		waitMetric(t, admin, `pbxgate_sip_calls_active{brand="b1",company="c1"}`, "1")

		r := runSipp(t, sipCall("invite_refused.xml", sipAddr, outside, domain, "rw1", "202"))
		expectCalls(t, r, 1, 0)
		l := g.waitEvent(map[string]string{"reason": "call_limit", "src": outside, "user": "rw1"})
		expectDetail(t, l, "roadwarrior at calls_from_other_networks")
		// From inside the office the roadwarrior is an ordinary user.
		expectCalls(t, runSipp(t, sipCall("invite.xml", sipAddr, "127.0.0.21", domain, "rw1", "203")), 1, 0)

		// Once the call from outside has ended, the next one passes.
		expectCalls(t, held.wait(), 1, 0)
		expectCalls(t, runSipp(t, sipCall("invite.xml", sipAddr, outside, domain, "rw1", "204")), 1, 0)
	})
	t.Run("ordinary user from outside: 403", func(t *testing.T) {
		expectCalls(t, runSipp(t, sipRegister("register_refused.xml", sipAddr, outside2, domain, "alice")), 1, 0)
		l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "network_refused", "src": outside2, "user": "alice"})
		expectDetail(t, l, "company c1: REGISTER from outside allowed_networks")
		expectCalls(t, runSipp(t, sipCall("invite_refused.xml", sipAddr, outside2, domain, "alice", "201")), 1, 0)
		l = g.waitEvent(map[string]string{"reason": "network_refused", "src": outside2, "detail": "company c1: INVITE from outside allowed_networks"})
		if l["user"] != "alice" {
			t.Errorf("INVITE refusal event names user %q, want alice", l["user"])
		}
	})
	t.Run("IP filter by source address", func(t *testing.T) {
		for _, src := range []string{"127.0.0.22", "127.0.0.23", "127.0.0.254", "127.0.1.1", "127.1.0.1", "127.200.0.1"} {
			inside := strings.HasPrefix(src, "127.0.0.")
			scenario := "register_refused.xml"
			if inside {
				scenario = "register.xml"
			}
			r := runSipp(t, sipRegister(scenario, sipAddr, src, domain, "bob"))
			if r.successful() != 1 {
				t.Errorf("REGISTER from %s (inside allowed_networks: %v):\n%s", src, inside, r)
			}
			want := 1
			if inside {
				want = 0
			}
			if got := g.countEvents(map[string]string{"reason": "network_refused", "src": src}); got != want {
				t.Errorf("REGISTER from %s: %d network_refused events, want %d", src, got, want)
			}
		}
	})
}

const sipFloodConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
services:
  - {name: pbx, protocol: sip, domains: [pbx.example.com], backend: {address: "{{.PBX}}"}}
sip:
  trusted: [127.0.30.9]
  flood: {window: 2s, limit: 20, block_for: 3s}
`

// TestSIPFlood: a source sending 50 OPTIONS at once gets answers for the
// first 20 of the window, then none at all (one flood event) until
// block_for has passed; a trusted source sending the same is never cut
// off.
func TestSIPFlood(t *testing.T) {
	t.Parallel()
	sipAddr, pbx := freeAddr(t), pbxAddr(t, "127.0.30.100")
	g := startGateway(t, render(t, sipFloodConfig, map[string]any{"SIP": sipAddr, "PBX": pbx}))
	p := startSippServer(t, sippArgs{scenario: "pbx.xml", ip: hostOf(pbx), port: portOf(pbx), calls: 500, timeout: 90 * time.Second})
	const attacker, trusted = "127.0.30.1", "127.0.30.9"
	burst := func(src string, n int) sippResult {
		t.Helper()
		return runSipp(t, sippArgs{scenario: "options.xml", remote: sipAddr, ip: src, calls: n, rate: 500, limit: n,
			noAnswer: time.Second,
			keys:     map[string]string{"domain": "pbx.example.com", "user": "ping", "ua": "pbxgate-e2e"}})
	}

	r := burst(attacker, 50)
	l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "flood", "src": attacker})
	blocked, err := time.Parse(time.RFC3339Nano, l["time"])
	if err != nil {
		t.Fatalf("flood event without a time: %v", l)
	}
	// The window is sliding (an estimate from two buckets): never fewer
	// than limit answers, a few more when the burst spans two buckets.
	if ok := r.successful(); ok < 20 || ok > 25 || r.failed() != 50-ok || r.stat("FailedTimeoutOnRecv") != r.failed() {
		t.Errorf("burst of 50 OPTIONS with limit 20: want 20..25 answered and the rest unanswered:\n%s\n%s", r, clipTail(g.stderr.String(), 3000))
	}
	if n := p.received("OPTIONS "); n != r.successful() {
		t.Errorf("the PBX got %d OPTIONS, want only the %d answered ones", n, r.successful())
	}
	// Still blocked a moment later, from another port (a new flow)...
	if r := burst(attacker, 1); r.successful() != 0 {
		t.Errorf("blocked source answered %v after the block began:\n%s", time.Since(blocked), r)
	}

	t.Run("trusted source is never blocked", func(t *testing.T) {
		r := burst(trusted, 50)
		expectCalls(t, r, 50, 0)
		if n := g.countEvents(map[string]string{"reason": "flood", "src": trusted}); n != 0 {
			t.Errorf("%d flood events for the trusted source", n)
		}
	})

	// ...and answered again once block_for has passed. Waiting is the
	// point here: the block's length is what is tested.
	time.Sleep(time.Until(blocked.Add(3*time.Second + 300*time.Millisecond)))
	expectCalls(t, burst(attacker, 5), 5, 0)
	if n := g.countEvents(map[string]string{"reason": "flood", "src": attacker}); n != 1 {
		t.Errorf("%d flood events for the attacker, want 1", n)
	}
}

// TestSIPScanner: a REGISTER with a scanner's User-Agent (the built-in
// list) gets no answer and never reaches the PBX; the same REGISTER with a
// phone's User-Agent does. The flood configuration serves: one REGISTER
// each is far below its limit.
func TestSIPScanner(t *testing.T) {
	t.Parallel()
	sipAddr, pbx := freeAddr(t), pbxAddr(t, "127.0.40.100")
	g := startGateway(t, render(t, sipFloodConfig, map[string]any{"SIP": sipAddr, "PBX": pbx}))
	p := startSippServer(t, sippArgs{scenario: "pbx.xml", ip: hostOf(pbx), port: portOf(pbx), calls: 10, timeout: 60 * time.Second})

	a := sipRegister("register.xml", sipAddr, "127.0.40.1", "pbx.example.com", "100")
	a.keys["ua"], a.noAnswer = "friendly-scanner", 1500*time.Millisecond
	r := runSipp(t, a)
	if r.successful() != 0 || r.stat("FailedTimeoutOnRecv") != 1 {
		t.Errorf("scanner REGISTER: want no answer (a receive timeout):\n%s", r)
	}
	l := g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "scanner", "src": "127.0.40.1"})
	expectDetail(t, l, `"friendly-scanner"`)

	expectCalls(t, runSipp(t, sipRegister("register.xml", sipAddr, "127.0.40.2", "pbx.example.com", "100")), 1, 0)
	if n := p.received("REGISTER "); n != 1 {
		t.Errorf("the PBX got %d REGISTERs, want 1 (the phone's, not the scanner's)", n)
	}
}

const sipBruteForceConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
services:
  - {name: pbx, protocol: sip, domains: [pbx.example.com], backend: {address: "{{.PBX}}"}}
fraud:
  whitelist: [127.0.0.250]
`

// TestSIPBruteForce: a client guessing alice's password gets 401 (or 403)
// from the PBX stand-in again and again; the gateway reports each refusal
// with the user, and bans the source once the refusals pass
// fraud.suspicious_per_minute (10): from then on it answers nothing and
// the PBX sees nothing more.
func TestSIPBruteForce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status, pbx, reason, src string
		free                     int // refusals that are no event
	}{
		// The first 401 is a normal challenge; every further one is an
		// event.
		{"401", "pbx_challenge.xml", "repeated_challenge", "127.0.50.1", 1},
		{"403", "pbx_forbidden.xml", "status", "127.0.50.2", 0},
	} {
		t.Run(tc.status, func(t *testing.T) {
			t.Parallel()
			sipAddr, pbx := freeAddr(t), pbxAddr(t, "127.0.50.100")
			g := startGateway(t, render(t, sipBruteForceConfig, map[string]any{"SIP": sipAddr, "PBX": pbx}))
			p := startSippServer(t, sippArgs{scenario: tc.pbx, ip: hostOf(pbx), port: portOf(pbx), calls: 100, timeout: 60 * time.Second})

			a := sipRegister("register_auth.xml", sipAddr, tc.src, "pbx.example.com", "alice")
			a.calls, a.rate, a.noAnswer = 25, 10, time.Second
			r := runSipp(t, a)
			g.waitLog(map[string]string{"msg": "source banned", "src": tc.src})
			l := g.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": tc.reason, "src": tc.src, "user": "alice"})
			expectDetail(t, l, "SIP "+tc.status+" to REGISTER")

			// Answers stop at the ban (a few may pass while it is being
			// applied); the unanswered REGISTERs time out.
			// The 11th event makes the score pass 10 and bans.
			first := 11 + tc.free
			if ok := r.successful(); ok < first || ok > first+4 || r.stat("FailedTimeoutOnRecv") != 25-ok {
				t.Errorf("want %d..%d REGISTERs refused by the PBX and the rest unanswered:\n%s", first, first+4, r)
			}
			seen := p.received("REGISTER ")
			if seen != r.successful() {
				t.Errorf("the PBX got %d REGISTERs, want only the %d answered ones", seen, r.successful())
			}
			if n := g.countEvents(map[string]string{"reason": tc.reason, "src": tc.src, "user": "alice"}); n != r.successful()-tc.free {
				t.Errorf("%d %s events for alice, want one per refusal but the first %d: %d", n, tc.reason, tc.free, r.successful()-tc.free)
			}

			// Banned: new REGISTERs (a new flow) get nothing, and reach
			// nothing.
			a.calls = 3
			r = runSipp(t, a)
			if r.successful() != 0 || r.stat("FailedTimeoutOnRecv") != 3 {
				t.Errorf("banned source answered:\n%s", r)
			}
			if n := p.received("REGISTER "); n != seen {
				t.Errorf("the PBX got %d REGISTERs from the banned source", n-seen)
			}
			e, ok := g.entries("bans")[tc.src]
			switch {
			case !ok:
				t.Errorf("%s not in the bans", tc.src)
			case !strings.Contains(e.Reason, "rejected_by_service"):
				t.Errorf("ban reason %q does not name the refusals", e.Reason)
			case len(e.Evidence) == 0 || !strings.Contains(strings.Join(e.Evidence, "\n"), "alice"):
				t.Errorf("ban evidence %q does not name alice", e.Evidence)
			}
		})
	}
}
