package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/config"
)

func TestSlotMath(t *testing.T) {
	tests := []struct {
		name  string
		d     time.Duration
		rate  int
		count int64
		last  time.Duration // due time of the last slot
	}{
		{"defaults", 10 * time.Second, 500, 5000, 10*time.Second - 2*time.Millisecond},
		{"one per second", 3 * time.Second, 1, 3, 2 * time.Second},
		{"rate not dividing a second", time.Second, 3, 3, 666666666},
		{"phase not a multiple of the interval", 1100 * time.Millisecond, 2, 3, time.Second},
		{"shorter than one interval", 100 * time.Millisecond, 1, 1, 0},
		{"zero duration", 0, 500, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := slotCount(tc.d, tc.rate)
			if n != tc.count {
				t.Fatalf("slotCount(%v, %d) = %d, want %d", tc.d, tc.rate, n, tc.count)
			}
			if n == 0 {
				return
			}
			if got := slotTime(n-1, tc.rate); got != tc.last {
				t.Errorf("last slot at %v, want %v", got, tc.last)
			}
			if got := slotTime(n, tc.rate); got < tc.d {
				t.Errorf("slot %d at %v still inside the phase of %v", n, got, tc.d)
			}
		})
	}
}

// TestClientSlotsPartition: the clients' schedules together hold every
// slot of the phase exactly once, each client's evenly spaced.
func TestClientSlotsPartition(t *testing.T) {
	for _, tc := range []struct{ users, rate int }{{20, 500}, {1, 7}, {3, 1000}, {254, 100000}, {7, 3}} {
		t.Run(fmt.Sprintf("%d users at %d/s", tc.users, tc.rate), func(t *testing.T) {
			total := slotCount(2*time.Second, tc.rate)
			seen := make(map[time.Duration]int)
			sum := 0
			for i := range tc.users {
				due := clientSlots(i, tc.users, total, tc.rate)
				sum += len(due)
				for k, d := range due {
					seen[d]++
					if k > 0 {
						gap := d - due[k-1]
						want := slotTime(int64(tc.users), tc.rate)
						if diff := gap - want; diff < -time.Nanosecond || diff > time.Nanosecond {
							t.Fatalf("client %d: gap %v between slots %d and %d, want %v", i, gap, k-1, k, want)
						}
					}
				}
			}
			if int64(sum) != total {
				t.Fatalf("%d slots over all clients, want %d", sum, total)
			}
			for n := range total {
				if c := seen[slotTime(n, tc.rate)]; c != 1 {
					t.Fatalf("slot %d held %d times", n, c)
				}
			}
		})
	}
	if got := clientSlots(5, 3, 100, 10); got != nil {
		t.Errorf("client index beyond users: %v", got)
	}
	if got := clientSlots(4, 10, 3, 10); got != nil {
		t.Errorf("client with no slot: %v", got)
	}
}

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	thousand := make([]time.Duration, 1000)
	for i := range thousand {
		thousand[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"empty", nil, 9900, 0},
		{"one value", durations(7), 9900, 7 * time.Millisecond},
		{"median of two is the lower", durations(1, 2), 5000, time.Millisecond},
		{"p99 of 100 is the 99th", hundred, 9900, 99 * time.Millisecond},
		{"p50 of 100 is the 50th", hundred, 5000, 50 * time.Millisecond},
		{"max", hundred, 10000, 100 * time.Millisecond},
		{"p99 of 10 is the largest", durations(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 9900, 10 * time.Millisecond},
		{"p99.9 of 1000 is the 999th", thousand, 9990, 999 * time.Millisecond},
		{"p99 of 1000 is the 990th", thousand, 9900, 990 * time.Millisecond},
		{"p0 is the smallest", hundred, 0, time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(%d) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	ms := time.Millisecond
	samples := []sample{
		{due: 0, lat: 3 * ms, lag: 0, ok: true},
		{due: 100 * ms, lat: 1 * ms, lag: 2 * ms, ok: true}, // late
		{due: 1200 * ms, lat: 2 * ms, lag: 500 * time.Microsecond, ok: false},
		{due: 1300 * ms, lat: 9 * ms, lag: 0, ok: true},
	}
	st := summarize(samples, 5, time.Millisecond)
	want := phaseStats{Scheduled: 5, Sent: 4, OK: 3, Failed: 1, Unsent: 1, Late: 1, SuccessPct: 60,
		P50: 2, P90: 9, P99: 9, P999: 9, Max: 9, LagP99: 2}
	if st.Scheduled != want.Scheduled || st.Sent != want.Sent || st.OK != want.OK || st.Failed != want.Failed ||
		st.Unsent != want.Unsent || st.Late != want.Late || st.SuccessPct != want.SuccessPct ||
		st.P50 != want.P50 || st.P99 != want.P99 || st.Max != want.Max || st.LagP99 != want.LagP99 {
		t.Errorf("summarize = %+v\nwant %+v", st, want)
	}

	tl := timeline(samples, 2*time.Second)
	if len(tl) != 2 || tl[0].Sent != 2 || tl[0].OK != 2 || tl[0].Max != 3 || tl[1].Sent != 2 || tl[1].OK != 1 || tl[1].P99 != 9 {
		t.Errorf("timeline = %+v", tl)
	}
	part := splitStats(samples, 100*ms, 1300*ms, time.Millisecond)
	if part.Sent != 2 || part.OK != 1 || part.Max != 2 || part.Duration != 1.2 {
		t.Errorf("splitStats [100ms, 1.3s) = %+v", part)
	}
	if empty := summarize(nil, 0, time.Millisecond); empty.SuccessPct != 0 || empty.P99 != 0 {
		t.Errorf("no samples: %+v", empty)
	}
}

// TestRenderedConfigLoads: the generated configuration is one pbxgate
// accepts, and says what the benchmark means it to.
func TestRenderedConfigLoads(t *testing.T) {
	for _, kernel := range []bool{false, true} {
		t.Run(fmt.Sprintf("kernel_blacklist=%v", kernel), func(t *testing.T) {
			testRenderedConfig(t, kernel)
		})
	}
}

func testRenderedConfig(t *testing.T, kernel bool) {
	hold, wantHold := "", config.DefaultRefusedHold // pbxgate's default, or -refused-hold
	if kernel {
		hold, wantHold = "0s", 0
	}
	data, err := renderConfig(gatewayConfig{
		DataDir: "/tmp/fraud flood/data", Listen: "127.0.0.1:40001", Backend: "127.0.0.1:40002",
		Host: "portal.bench", Threshold: 10, BlacklistFor: "30m", SuspectRate: 200, Unproven: 7, MaxConns: 10000,
		KernelBlacklist: kernel, RefusedHold: hold,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse(data, "fraudflood.yaml")
	if err != nil {
		t.Fatalf("pbxgate rejects the generated config: %v\n%s", err, data)
	}
	switch {
	case c.Firewall.KernelBlacklist.Enabled != kernel:
		t.Errorf("firewall.kernel_blacklist.enabled %v, want %v\n%s", c.Firewall.KernelBlacklist.Enabled, kernel, data)
	case len(c.Firewall.Roles) != 0 || len(c.Firewall.TrustedNetworks) != 0:
		t.Errorf("firewall %+v: only the kernel blacklist is meant", c.Firewall)
	case c.Fraud.RefusedHold == nil || *c.Fraud.RefusedHold != wantHold:
		t.Errorf("fraud.refused_hold %v, want %v\n%s", c.Fraud.RefusedHold, wantHold, data)
	case c.Fraud.UnprovenConcurrency != 7 || c.Fraud.SuspectRate != 200:
		t.Errorf("fraud %+v: want the gates' settings", c.Fraud)
	case c.DataDir != "/tmp/fraud flood/data":
		t.Errorf("data_dir %q", c.DataDir)
	case len(c.Listeners) != 1 || c.Listeners[0].Address != "127.0.0.1:40001" || c.Listeners[0].TLS != "none":
		t.Errorf("listeners %+v", c.Listeners)
	case len(c.Services) != 1 || len(c.Services[0].Hosts) != 1 || c.Services[0].Hosts[0] != "portal.bench" ||
		c.Services[0].Backend.Address != "127.0.0.1:40002":
		t.Errorf("services %+v", c.Services)
	case c.Fraud.SuspiciousPerMinute != 10 || time.Duration(c.Fraud.BlacklistFor) != 30*time.Minute:
		t.Errorf("fraud %+v", c.Fraud)
	case c.Fraud.Enabled == nil || !*c.Fraud.Enabled:
		t.Errorf("fraud not enabled")
	case c.Admin.Address != "off":
		t.Errorf("admin.address %q", c.Admin.Address)
	case c.Log.Level != "warn" || c.Log.Format != "json" || c.Log.Access == nil || *c.Log.Access:
		t.Errorf("log %+v", c.Log)
	case c.Limits.MaxConnections != 10000:
		t.Errorf("limits %+v", c.Limits)
	}
}

func TestAddresses(t *testing.T) {
	for _, tc := range []struct {
		got  netip.Addr
		want string
	}{
		{legitAddr(0), "127.0.1.1"}, {legitAddr(maxUsers - 1), "127.0.1.254"},
		{attackerAddr(0), "127.2.0.1"}, {attackerAddr(254), "127.2.0.255"}, {attackerAddr(255), "127.2.1.0"},
		{attackerAddr(999), "127.2.3.232"}, {attackerAddr(maxAttackers - 1), "127.2.253.232"},
	} {
		if tc.got.String() != tc.want {
			t.Errorf("got %v, want %s", tc.got, tc.want)
		}
	}
	seen := map[netip.Addr]bool{}
	for i := range maxAttackers {
		a := attackerAddr(i)
		if seen[a] || !isAttacker(a, maxAttackers) || isLegit(a) {
			t.Fatalf("attacker %d: %v repeated or misclassified", i, a)
		}
		seen[a] = true
	}
	if isAttacker(attackerAddr(1000), 1000) || !isAttacker(attackerAddr(999), 1000) {
		t.Error("isAttacker ignores the attacker count")
	}
	if isAttacker(netip.MustParseAddr("127.2.0.0"), 1000) || !isLegit(legitAddr(5)) || isLegit(netip.MustParseAddr("127.0.0.1")) {
		t.Error("address classification")
	}
}

func TestBackendAnswers(t *testing.T) {
	b := newLoginBackend(3)
	u, p := legitUser(2)
	head := func(headers ...string) []byte {
		return []byte("GET /login HTTP/1.1\r\nHost: portal.bench\r\n" + strings.Join(headers, "\r\n"))
	}
	tests := []struct {
		name     string
		head     []byte
		want     []byte
		keepOpen bool
	}{
		{"right password", head("Authorization: " + basicAuth(u, p)), answerOK, true},
		{"header name in another case", head("authorization:   " + basicAuth(u, p)), answerOK, true},
		{"wrong password", head("Authorization: " + basicAuth(u, "guess")), answer401, true},
		{"unknown user", head("Authorization: " + basicAuth("legit3", "pw-3-correct")), answer401, true},
		{"no credentials", head(), answer401, true},
		{"empty password", head("Authorization: " + basicAuth("legit0", "")), answer401, true},
		{"a body", head("Authorization: "+basicAuth(u, p), "Content-Length: 5"), answer400, false},
		{"chunked", head("Transfer-Encoding: chunked"), answer400, false},
		{"zero length body is none", head("Authorization: "+basicAuth(u, p), "Content-Length: 0"), answerOK, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, keep := b.answer(tc.head)
			if string(got) != string(tc.want) || keep != tc.keepOpen {
				t.Errorf("answer = %q, %v; want %q, %v", got, keep, tc.want, tc.keepOpen)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	op := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	tests := []struct {
		name string
		err  error
		cut  bool
		want outcome
	}{
		{"reset", op(syscall.ECONNRESET), false, refused},
		{"refused at connect", op(syscall.ECONNREFUSED), false, refused},
		{"broken pipe", op(syscall.EPIPE), false, refused},
		{"closed before an answer", io.EOF, false, refused},
		{"closed mid-answer", fmt.Errorf("read answer: %w", io.ErrUnexpectedEOF), false, refused},
		{"timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, false, timedOut},
		{"timeout at the phase end", &net.OpError{Op: "read", Err: timeoutErr{}}, true, unfinished},
		{"cancelled", context.Canceled, false, unfinished},
		{"no local port", op(syscall.EADDRNOTAVAIL), false, otherError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err, tc.cut); got != tc.want {
				t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
	// A close after waiting for a turn is no ban.
	if got := classifyAfter(io.EOF, false, 10*time.Millisecond); got != refused {
		t.Errorf("EOF at once = %d, want refused", got)
	}
	if got := classifyAfter(io.EOF, false, lateClose); got != timedOut {
		t.Errorf("EOF after %v = %d, want timedOut", lateClose, got)
	}
	if got := classifyAfter(&net.OpError{Op: "read", Err: timeoutErr{}}, true, lateClose); got != unfinished {
		t.Errorf("timeout at the phase end = %d, want unfinished", got)
	}
}

func TestAttackerTally(t *testing.T) {
	var s attackerStats
	s.firstRefusal = -1
	for _, o := range []outcome{answered401, answered401, timedOut, refused, refused, answered401, unfinished} {
		s.add(o, errors.New("x"))
	}
	if s.attempts != 7 || s.n401 != 3 || s.refused != 2 || s.timeouts != 1 || s.unfinished != 1 || s.connTimeouts != 0 {
		t.Errorf("counts %+v", s)
	}
	if s.firstRefusal != 2 || s.attemptsAfterBan != 3 || s.answeredAfterBan != 1 {
		t.Errorf("ban accounting %+v: want 2 answers before the first refusal, 3 attempts and 1 answer after", s)
	}
	// A source the kernel drops: its handshakes time out, which counts as
	// the ban's sign as a refusal does; a timeout after connecting does not.
	k := attackerStats{firstRefusal: -1}
	for _, o := range []outcome{answered401, timedOut, answered401, connectTimedOut, refused, connectTimedOut} {
		k.add(o, errors.New("x"))
	}
	if k.connTimeouts != 2 || k.refused != 1 || k.timeouts != 1 || k.firstRefusal != 2 || k.attemptsAfterBan != 2 || k.answeredAfterBan != 0 {
		t.Errorf("kernel-dropped attacker %+v: want 2 connect timeouts, first refusal after 2 answers", k)
	}
	// A source pbxgate holds after its ban: its unanswered attempts count
	// as refusals once the ban is known (held), not before (timedOut).
	h := attackerStats{firstRefusal: -1}
	for _, o := range []outcome{answered401, timedOut, held, held} {
		h.add(o, errors.New("x"))
	}
	if h.held != 2 || h.timeouts != 1 || h.firstRefusal != 1 || h.attemptsAfterBan != 1 || h.answeredAfterBan != 0 {
		t.Errorf("held attacker %+v: want 2 held, first refusal after 1 answer", h)
	}
	r := summarizeAttack([]attackerStats{s, {firstRefusal: -1, attempts: 1, n401: 1}, k, h}, 2*time.Second)
	if r.Attempts != 18 || r.NeverRefused != 1 || r.AnsweredBeforeBan != 5 || r.AttemptsPerSec != 9 ||
		r.Refused != 3 || r.Held != 2 || r.ConnectTimeouts != 2 || r.Timeouts != 3 ||
		r.BeforeBanHistogram["2"] != 2 || r.BeforeBanHistogram["1"] != 1 || r.BeforeBanHistogram["never"] != 1 {
		t.Errorf("summarizeAttack = %+v", r)
	}
	if got := histogram(map[string]int{"never": 1, "11": 2, "9": 3, "10": 4}); got != "9: 3, 10: 4, 11: 2, never: 1" {
		t.Errorf("histogram order: %s", got)
	}
}

func TestJudge(t *testing.T) {
	good := func() *report {
		return &report{
			Quiet: &phaseStats{P99: 2}, Flood: &phaseStats{P99: 3, SuccessPct: 99.95}, Ratio: 1.5,
			Attack: attackResult{Answered401: 11000, AttemptsAfterBan: 1000, AnsweredAfterBan: 3},
			Bans:   banStats{Attackers: 1000},
		}
	}
	tests := []struct {
		name            string
		change          func(*report)
		pass, succ, rat bool
	}{
		{"meets both targets", func(*report) {}, true, true, true},
		{"success below target", func(r *report) { r.Flood.SuccessPct = 99.8 }, false, false, true},
		{"ratio above target", func(r *report) { r.Ratio = 2.01 }, false, true, false},
		{"no baseline", func(r *report) { r.Quiet.P99 = 0 }, false, true, false},
		{"attack never reached the login", func(r *report) { r.Attack.Answered401 = 0 }, false, true, true},
		{"nobody banned", func(r *report) { r.Bans.Attackers = 0 }, false, true, true},
		{"a user banned", func(r *report) { r.Bans.Legit = 1 }, false, true, true},
		{"banned attackers still answered", func(r *report) { r.Attack.AnsweredAfterBan = 11 }, false, true, true},
		{"kernel dropped the flood", func(r *report) { r.Kernel = &kernelStats{DropsFlood: 5000, Covered: 1000, Banned: 1000} }, true, true, true},
		{"kernel dropped nothing", func(r *report) { r.Kernel = &kernelStats{Covered: 1000, Banned: 1000} }, false, true, true},
		{"kernel set misses bans", func(r *report) { r.Kernel = &kernelStats{DropsFlood: 5000, Covered: 999, Banned: 1000} }, false, true, true},
		{"kernel unreadable", func(r *report) { r.Kernel = &kernelStats{DropsFlood: 5000, Covered: 1000, Banned: 1000, Error: "x"} }, false, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.change(r)
			v := judge(r, 99.9, 2)
			if v.Pass != tc.pass || v.SuccessOK != tc.succ || v.RatioOK != tc.rat {
				t.Errorf("verdict %+v, want pass %v success %v ratio %v", v, tc.pass, tc.succ, tc.rat)
			}
		})
	}
}

func TestCountBans(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lines := []banLine{
		{Time: start.Add(100 * time.Millisecond), Src: "127.2.0.1"},
		{Time: start.Add(300 * time.Millisecond), Src: "127.2.0.2"},
		{Time: start.Add(200 * time.Millisecond), Src: "127.2.0.1"}, // again: one attacker
		{Time: start.Add(400 * time.Millisecond), Src: "127.0.1.3"},
		{Time: start.Add(500 * time.Millisecond), Src: "10.0.0.0/8"},
		{Time: start.Add(600 * time.Millisecond), Src: "garbage"},
	}
	b := countBans(lines, 2, start, 1000)
	if b.Logged != 8 || b.Attackers != 2 || b.Legit != 1 || b.Other != 2 || b.LastAfterMs != 500 || b.MedianAfterMs != 300 {
		t.Errorf("countBans = %+v", b)
	}
}

func TestProcParsers(t *testing.T) {
	cpu, err := parseStatCPU("4242 (pbx gate) (x) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 8 0")
	if err != nil || cpu != 2 {
		t.Errorf("parseStatCPU = %v, %v; want 2 s", cpu, err)
	}
	if _, err := parseStatCPU("4242 no parenthesis"); err == nil {
		t.Error("parseStatCPU accepted a line without a command field")
	}

	m := map[string]int64{}
	parseCounters(strings.NewReader("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 17 18\n"+
		"IpExt: InNoRoutes\nIpExt: 3\n"), m)
	if m["TcpExt.ListenOverflows"] != 17 || m["TcpExt.ListenDrops"] != 18 || m["IpExt.InNoRoutes"] != 3 {
		t.Errorf("parseCounters = %v", m)
	}
	d := counterDelta(map[string]int64{"TcpExt.ListenOverflows": 10}, m)
	if d["TcpExt.ListenOverflows"] != 7 {
		t.Errorf("counterDelta = %v", d)
	}

	a := parseCPUTimes("cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 100 0 100 700 100 0 0 0 0 0\ncpu1 0 0 0 1000 0 0 0 0 0 0\nintr 5\n")
	b := parseCPUTimes("cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 200 0 200 750 100 0 40 10 0 0\ncpu1 0 0 0 1100 0 0 0 0 0 0\n")
	sh := cpuShares(a, b)
	if len(sh) != 2 || sh[0] != (cpuShare{Busy: 83, Softirq: 13, Steal: 3}) || sh[1] != (cpuShare{}) {
		t.Errorf("cpuShares = %+v", sh)
	}
}

// fakeGateway stands in for pbxgate on loopback: it serves the login
// backend and refuses a source's n-th connection when banned(src, n) says
// so, by closing it at once or, with hold, by holding it unanswered until
// stop.
type fakeGateway struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[string]int // connections by source address
	held  []net.Conn
}

func startFakeGateway(t *testing.T, banned func(src string, n int) bool, hold bool) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{addr: ln.Addr().String(), ln: ln, conns: map[string]int{}}
	b := newLoginBackend(2)
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			src := c.RemoteAddr().(*net.TCPAddr).IP.String()
			g.mu.Lock()
			g.conns[src]++
			refuse := banned(src, g.conns[src])
			if refuse && hold {
				g.held = append(g.held, c)
			}
			g.mu.Unlock()
			switch {
			case refuse && !hold:
				c.Close()
			case !refuse:
				g.wg.Go(func() { b.serve(c) })
			}
		}
	})
	return g
}

// count returns the connections src opened so far.
func (g *fakeGateway) count(src string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conns[src]
}

// stop closes the listener and the held connections and waits for the
// serving goroutines.
func (g *fakeGateway) stop() {
	g.ln.Close()
	g.mu.Lock()
	for _, c := range g.held {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// TestAgainstFakeGateway runs the real client code on loopback against a
// stand-in gateway that answers three connections per source address and
// then closes new ones at once, as pbxgate does after a ban.
func TestAgainstFakeGateway(t *testing.T) {
	defer goleak.VerifyNone(t)
	gw := startFakeGateway(t, func(src string, n int) bool { return n > 3 && strings.HasPrefix(src, "127.2.") }, false)
	defer gw.stop()

	a := &attacker{idx: 4, src: net.TCPAddrFromAddrPort(netip.AddrPortFrom(attackerAddr(4), 0)),
		target: gw.addr, host: "portal.bench", timeout: 5 * time.Second, attempts: 10}
	start := time.Now()
	st := a.run(context.Background(), start, start.Add(30*time.Second))
	if st.attempts != 10 || st.n401 != 3 || st.refused != 7 || st.firstRefusal != 3 || st.answeredAfterBan != 0 {
		t.Errorf("attacker tally %+v: want 3 answered 401, then 7 refused", st)
	}

	c, err := newLegitClient(1, legitAddr(1), gw.addr, "portal.bench", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	due := clientSlots(0, 1, slotCount(100*time.Millisecond, 100), 100) // 10 requests, 10 ms apart
	res := c.run(context.Background(), time.Now(), due, time.Now().Add(10*time.Second))
	if res.firstErr != nil || len(res.samples) != 10 {
		t.Fatalf("legit user: %d samples, first error %v", len(res.samples), res.firstErr)
	}
	for i, s := range res.samples {
		if !s.ok || s.lat < s.lag || s.due != due[i] {
			t.Errorf("sample %d: %+v", i, s)
		}
	}
	if n := gw.count(legitAddr(1).String()); n != 1 {
		t.Errorf("legit user opened %d connections, want one kept alive", n)
	}

	// A wrong password is a failure, not a crash, and keeps the
	// connection.
	c2, err := newLegitClient(0, legitAddr(0), gw.addr, "portal.bench", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.close()
	c2.req = []byte(strings.Replace(string(c2.req), basicAuth(legitUser(0)), basicAuth("legit0", "wrong"), 1))
	if ok, err := c2.do(time.Now().Add(5 * time.Second)); ok || err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong password: ok %v, err %v; want a 401 failure", ok, err)
	}
}

// TestHeldAfterBan: a gateway that holds a banned source's connections
// unanswered. Once the parent has said "ban ADDR", an attacker's
// unanswered attempts are held (refusals); before, or for a source not
// named, they are timeouts (a turn that did not come).
func TestHeldAfterBan(t *testing.T) {
	defer goleak.VerifyNone(t)
	gw := startFakeGateway(t, func(_ string, n int) bool { return n > 2 }, true)
	defer gw.stop()

	banned := make([]atomic.Bool, 10)
	in := bufio.NewScanner(strings.NewReader("ban 127.2.0.5\nban 10.0.0.1\nban 127.2.0.99\nnoise\n"))
	readBans(in, banned)
	for i := range banned {
		if banned[i].Load() != (i == 4) {
			t.Fatalf("attacker %d banned %v after \"ban 127.2.0.5\" (attackerAddr(4))", i, banned[i].Load())
		}
	}
	attack := func(idx int) attackerStats {
		a := &attacker{idx: idx, src: net.TCPAddrFromAddrPort(netip.AddrPortFrom(attackerAddr(idx), 0)),
			target: gw.addr, host: "portal.bench", timeout: 200 * time.Millisecond, attempts: 4,
			banned: &banned[idx]}
		start := time.Now()
		return a.run(context.Background(), start, start.Add(30*time.Second))
	}
	if st := attack(4); st.n401 != 2 || st.held != 2 || st.timeouts != 0 || st.firstRefusal != 2 {
		t.Errorf("banned attacker %+v: want 2 answered 401, then 2 held", st)
	}
	if st := attack(5); st.n401 != 2 || st.held != 0 || st.timeouts != 2 || st.firstRefusal != -1 {
		t.Errorf("attacker without a ban %+v: want 2 answered 401, then 2 timeouts", st)
	}
}

// TestCompare: the side-by-side summary reads the JSON a run writes and
// reports each run's mode, ratio, kernel drops and verdict.
func TestCompare(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r *report) string {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user := &report{
		Meta: map[string]string{"mode": "user space", "commit": "abc1234"}, Quiet: &phaseStats{P99: 2}, Flood: &phaseStats{P99: 6.5, SuccessPct: 100},
		FloodBanned: &phaseStats{P99: 10.25}, FloodRest: &phaseStats{P99: 4.125}, Ratio: 3.25, Attack: attackResult{Attempts: 300000, Refused: 290000},
	}
	user.Verdict = judge(user, 99.9, 2)
	kernel := &report{
		Meta: map[string]string{"commit": "abc1234"}, Quiet: &phaseStats{P99: 2}, Flood: &phaseStats{P99: 3, SuccessPct: 100},
		Ratio: 1.5, Attack: attackResult{Attempts: 60000, Answered401: 9000, ConnectTimeouts: 47000},
		Kernel: &kernelStats{DropsFlood: 51234, Covered: 1000, Banned: 1000}, Bans: banStats{Attackers: 1000},
	}
	kernel.Verdict = judge(kernel, 99.9, 2)
	if !kernel.Verdict.Pass || user.Verdict.Pass {
		t.Fatalf("test setup: verdicts %+v %+v", user.Verdict, kernel.Verdict)
	}
	pu, pk := write("user.json", user), write("kernel.json", kernel)

	tests := []struct {
		name  string
		files []string
		code  int
		want  []string
	}{
		{"both", []string{pu, pk}, 1, []string{"user space", "3.250", "4.125", "10.250", "290000", "kernel", "1.500", "47000", "51234",
			"p99 flood / quiet <= 2: FAIL (3.250)", "p99 flood / quiet <= 2: PASS (1.500); RESULT: PASS"}},
		{"kernel alone", []string{pk}, 0, []string{"kernel", "RESULT: PASS"}},
		{"missing file", []string{filepath.Join(dir, "none.json")}, 2, nil},
		{"no files", nil, 2, nil},
		{"not results", []string{write("other.json", &report{})}, 2, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			if code := compareMain(&out, tc.files); code != tc.code {
				t.Errorf("exit %d, want %d\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
