package kernelbl

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/netnstest"
)

func newSync(t testing.TB, ns *netnstest.NS, o Options) *Sync {
	t.Helper()
	o.NetNS = ns.FD
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ensure(); err != nil {
		t.Fatal(err)
	}
	return s
}

func pfx(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}

// TestBanBlocks: a ban drops the banned source's TCP and UDP (IPv4 and
// IPv6) while the client's other address still gets through; Remove lifts
// it; a flush of the policy table does not.
func TestBanBlocks(t *testing.T) {
	netnstest.NeedPeers(t)
	l := netnstest.NewLab(t)
	srv := l.Serve(t)
	s := newSync(t, l.Srv, Options{})
	const wait = time.Second

	// Before any ban every path works.
	l.WaitReachable(t, srv, 30*time.Second)

	// IPv4 as a mapped /128 must land in bl4.
	mapped := netip.PrefixFrom(netip.AddrFrom16(l.CliA4.As16()), 128)
	if err := s.Add(Entry{Prefix: mapped, Expires: time.Now().Add(time.Hour)}, Entry{Prefix: pfx(l.CliA6.String())}); err != nil {
		t.Fatal(err)
	}
	check := func(stage string, aBlocked bool) {
		t.Helper()
		probes := []struct {
			src, dst netip.Addr
			blocked  bool
		}{{l.CliA4, l.Srv4, aBlocked}, {l.CliB4, l.Srv4, false}, {l.CliA6, l.Srv6, aBlocked}, {l.CliB6, l.Srv6, false}}
		if strings.HasPrefix(stage, "after") {
			probes = probes[:2]
		}
		for _, c := range probes {
			if got := l.TCPOK(t, srv, c.src, c.dst, wait); got == c.blocked {
				t.Errorf("%s: tcp from %v reached=%v, want %v", stage, c.src, got, !c.blocked)
			}
			if got := l.UDPOK(t, srv, c.src, c.dst, wait); got == c.blocked {
				t.Errorf("%s: udp from %v reached=%v, want %v", stage, c.src, got, !c.blocked)
			}
		}
	}
	check("banned", true)

	// The firewall manager replaces its own table; ours is separate.
	script := "table inet pbxgate {}\nflush table inet pbxgate\ntable inet pbxgate {\n chain input { type filter hook input priority 0; policy accept; }\n}\n"
	cmd := l.Srv.Command(t, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("policy table: %v\n%s", err, out)
	}
	if out := l.Srv.Exec(t, "nft", "list", "table", "inet", "pbxgate"); !strings.Contains(out, "hook input") {
		t.Fatalf("policy table not loaded:\n%s", out)
	}
	check("after policy table reload", true)

	if err := s.Remove(mapped, pfx(l.CliA6.String())); err != nil {
		t.Fatal(err)
	}
	check("removed", false)
}

// kernelRanges reads a set back over netlink as start→timeout/expires.
type kview struct {
	timeout, expires time.Duration
	hi               netip.Addr
}

func readSet(t testing.TB, ns *netnstest.NS, name string) map[netip.Addr]kview {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.FD)) // one socket per call
	if err != nil {
		t.Fatalf("netlink in %s: %v", ns.Name, err)
	}
	tbl := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	set, err := c.GetSetByName(tbl, name)
	if err != nil {
		t.Fatalf("get set %s: %v", name, err)
	}
	els, err := c.GetSetElements(set)
	if err != nil {
		t.Fatalf("elements of %s: %v", name, err)
	}
	v4 := name == Set4Name
	maxA := max6
	if v4 {
		maxA = max4
	}
	out := map[netip.Addr]kview{}
	for lo, k := range rangesFromElements(els, v4, maxA, time.Unix(0, 0)) {
		var v kview
		v.hi = k.hi.addr(v4)
		if k.exp != forever {
			v.expires = time.Duration(k.exp)
		}
		out[lo.addr(v4)] = v
	}
	for _, e := range els {
		if !e.IntervalEnd {
			if k, ok := keyU128(e.Key, v4); ok {
				v := out[k.addr(v4)]
				v.timeout = e.Timeout
				out[k.addr(v4)] = v
			}
		}
	}
	return out
}

// clock is a settable time source.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestTimeoutsPerElement(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	clk := &clock{time.Now()}
	s := newSync(t, ns, Options{Now: clk.now, Jitter: -1})
	if err := s.Add(
		Entry{pfx("192.0.2.1"), clk.t.Add(time.Hour)},
		Entry{pfx("192.0.2.3"), clk.t.Add(2 * time.Hour)},
		Entry{pfx("192.0.2.5"), time.Time{}},
		Entry{pfx("192.0.2.7"), clk.t.Add(300 * time.Millisecond)}, // rounded up to 1 s
		Entry{pfx("192.0.2.9"), clk.t.Add(-time.Second)},           // expired: not added
		Entry{pfx("2001:db8::/48"), clk.t.Add(3 * time.Hour)},
	); err != nil {
		t.Fatal(err)
	}
	got := readSet(t, ns, Set4Name)
	want := map[string]time.Duration{"192.0.2.1": time.Hour, "192.0.2.3": 2 * time.Hour, "192.0.2.5": 0, "192.0.2.7": time.Second}
	if len(got) != len(want) {
		t.Errorf("bl4 has %d ranges, want %d: %v", len(got), len(want), got)
	}
	for a, tmo := range want {
		v, ok := got[netip.MustParseAddr(a)]
		if !ok || v.timeout != tmo || v.hi != netip.MustParseAddr(a) {
			t.Errorf("%s: %+v (present %v), want timeout %v", a, v, ok, tmo)
		}
	}
	g6 := readSet(t, ns, Set6Name)
	if v := g6[netip.MustParseAddr("2001:db8::")]; len(g6) != 1 || v.timeout != 3*time.Hour || v.hi != netip.MustParseAddr("2001:db8:0:ffff:ffff:ffff:ffff:ffff") {
		t.Errorf("bl6 = %v", g6)
	}

	// Add replaces a timeout.
	if err := s.Add(Entry{pfx("192.0.2.1"), clk.t.Add(5 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if v := readSet(t, ns, Set4Name)[netip.MustParseAddr("192.0.2.1")]; v.timeout != 5*time.Hour {
		t.Errorf("after re-add: timeout %v, want 5h", v.timeout)
	}
}

func TestReconcile(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	clk := &clock{time.Now()}
	a := newSync(t, ns, Options{Now: clk.now, Jitter: -1})
	h := clk.t.Add(time.Hour)
	if err := a.Add(Entry{pfx("198.51.100.1"), h}, Entry{pfx("198.51.100.3"), h}, Entry{pfx("198.51.100.5"), h}); err != nil {
		t.Fatal(err)
	}
	// Someone else adds an element by hand: our store does not list it.
	ns.Exec(t, "nft", "add", "element", "inet", TableName, Set4Name, "{ 203.0.113.0/24 }")

	// A new process: no mirror, store is the truth.
	b := newSync(t, ns, Options{Now: clk.now, Jitter: -1, ReadEvery: -1})
	want := []Entry{
		{pfx("198.51.100.1"), h.Add(5 * time.Minute)}, // 1h left of 1h05: fresh, kept
		{pfx("198.51.100.3"), h.Add(2 * time.Hour)},   // 1h left of 3h: near expiry, re-added
		{pfx("198.51.100.9"), h},                      // missing: added
	}
	if err := b.Reconcile(want); err != nil {
		t.Fatal(err)
	}
	got := readSet(t, ns, Set4Name)
	exp := map[string]time.Duration{"198.51.100.1": time.Hour, "198.51.100.3": 3 * time.Hour, "198.51.100.9": time.Hour}
	if len(got) != len(exp) {
		t.Errorf("bl4 = %v, want %v", got, exp)
	}
	for a, tmo := range exp {
		if v, ok := got[netip.MustParseAddr(a)]; !ok || v.timeout != tmo {
			t.Errorf("%s: %+v present=%v, want timeout %v", a, v, ok, tmo)
		}
	}

	// Time passes: the kernel's 1h element for .1 now has more left than
	// the ban (shortened ban): replaced. An invalid entry is reported, the
	// rest applied.
	clk.t = clk.t.Add(50 * time.Minute)
	err := b.Reconcile(append(want[:2:2], Entry{Prefix: netip.Prefix{}}))
	if !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("Reconcile with invalid prefix: err = %v, want ErrInvalidPrefix", err)
	}
	got = readSet(t, ns, Set4Name)
	if _, ok := got[netip.MustParseAddr("198.51.100.9")]; ok || len(got) != 2 {
		t.Errorf("after dropping .9: %v", got)
	}
}

func TestEnsureIdempotent(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	s := newSync(t, ns, Options{})
	if err := s.Add(Entry{Prefix: pfx("192.0.2.0/24")}, Entry{Prefix: pfx("2001:db8::1")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := s.Ensure(); err != nil {
			t.Fatal(err)
		}
	}
	out := ns.Exec(t, "nft", "list", "table", "inet", TableName)
	for _, w := range []string{"192.0.2.0/24", "2001:db8::1", "priority raw", "ip saddr @bl4", "ip6 saddr @bl6", "flags interval,timeout"} {
		if !strings.Contains(out, w) {
			t.Errorf("table lacks %q:\n%s", w, out)
		}
	}
	if n := strings.Count(out, "drop"); n != 2 {
		t.Errorf("%d drop rules after repeated Ensure, want 2:\n%s", n, out)
	}
	if err := s.Uninstall(); err != nil {
		t.Fatal(err)
	}
	if err := s.Uninstall(); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
	if out := ns.Exec(t, "nft", "list", "tables"); strings.Contains(out, TableName) {
		t.Errorf("table still there: %s", out)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Add(Entry{Prefix: pfx("192.0.2.1")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

// hosts returns n non-adjacent /32 entries (adjacent ones would merge).
func hosts(n int, exp time.Time) []Entry {
	out := make([]Entry, n)
	for i := range out {
		x := uint32(10<<24) + uint32(i)*2
		out[i] = Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)}), 32), Expires: exp}
	}
	return out
}

func TestLoad100k(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	s := newSync(t, ns, Options{})
	entries := hosts(100_000, time.Now().Add(time.Hour))
	start := time.Now()
	if err := s.Reconcile(entries); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("loaded 100000 /32 in %v", took)
	if took > 20*time.Second {
		t.Errorf("loading 100k elements took %v, want a few seconds", took)
	}
	if n := len(readSet(t, ns, Set4Name)); n != len(entries) {
		t.Errorf("kernel has %d ranges, want %d", n, len(entries))
	}
	// A second Reconcile with the same list changes nothing and, trusting
	// the mirror, is quick.
	start = time.Now()
	if err := s.Reconcile(entries); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("no-op reconcile of 100000 took %v", took)
	} else {
		t.Logf("no-op reconcile of 100000 in %v", took)
	}
}

func benchLoad(b *testing.B, n int) {
	netnstest.NeedPeers(b)
	ns := netnstest.NewNS(b)
	s := newSync(b, ns, Options{})
	entries := hosts(n, time.Now().Add(time.Hour))
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		if err := s.Uninstall(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Reconcile(entries); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad10k(b *testing.B)  { benchLoad(b, 10_000) }
func BenchmarkLoad100k(b *testing.B) { benchLoad(b, 100_000) }

func TestRun(t *testing.T) {
	defer goleak.VerifyNone(t)
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	s := newSync(t, ns, Options{ReadEvery: -1})
	var mu sync.Mutex
	list := []Entry{{Prefix: pfx("192.0.2.1")}}
	want := func() []Entry { mu.Lock(); defer mu.Unlock(); return slices.Clone(list) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx, want, 20*time.Millisecond); close(done) }()
	waitFor := func(addr string, present bool) {
		t.Helper()
		for range 200 { // bounded: 200 × 20 ms
			if _, ok := readSet(t, ns, Set4Name)[netip.MustParseAddr(addr)]; ok == present {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("%s present=%v never reached", addr, present)
	}
	waitFor("192.0.2.1", true)
	mu.Lock()
	list = []Entry{{Prefix: pfx("192.0.2.9")}}
	mu.Unlock()
	waitFor("192.0.2.1", false)
	waitFor("192.0.2.9", true)
	cancel()
	<-done
}

// TestRulesKept: Ensure and Reconcile leave intact drop rules alone, so
// their packet counters survive every resync; a tampered chain is
// rewritten.
func TestRulesKept(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	s := newSync(t, ns, Options{})
	handles := func() string {
		out := ns.Exec(t, "nft", "-a", "list", "chain", "inet", TableName, ChainName)
		var hs []string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "drop") {
				_, h, _ := strings.Cut(line, "# handle ")
				hs = append(hs, strings.TrimSpace(h))
			}
		}
		return strings.Join(hs, ",")
	}
	before := handles()
	if strings.Count(before, ",") != 1 {
		t.Fatalf("drop rules after Ensure: %q", before)
	}
	if err := s.Reconcile([]Entry{{Prefix: pfx("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ensure(); err != nil {
		t.Fatal(err)
	}
	if got := handles(); got != before {
		t.Errorf("rules rewritten by Reconcile/Ensure: handles %s, were %s", got, before)
	}

	ns.Exec(t, "nft", "add", "rule", "inet", TableName, ChainName, "ip saddr 198.51.100.7 accept")
	if err := s.Reconcile([]Entry{{Prefix: pfx("192.0.2.1")}}); err != nil {
		t.Fatal(err)
	}
	out := ns.Exec(t, "nft", "list", "chain", "inet", TableName, ChainName)
	if strings.Count(out, "drop") != 2 || strings.Contains(out, "198.51.100.7") {
		t.Errorf("tampered chain not repaired:\n%s", out)
	}
	if got := handles(); got == before {
		t.Errorf("tampered chain kept its rules")
	}
}

// benchAddOne measures Add of one new host while the sets hold n others:
// what each automatic ban costs when bans arrive one at a time (a ban
// wave: the mirror drains each as it comes). It should not grow with n.
func benchAddOne(b *testing.B, n int) {
	netnstest.NeedPeers(b)
	ns := netnstest.NewNS(b)
	s := newSync(b, ns, Options{})
	exp := time.Now().Add(time.Hour)
	if err := s.Reconcile(hosts(n, exp)); err != nil {
		b.Fatal(err)
	}
	// New hosts in 11.0.0.0/8, one apart: never adjacent to each other or
	// to the loaded ones.
	i := 0
	for b.Loop() {
		x := uint32(11<<24) + uint32(i)*2
		i++
		a := netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
		if err := s.Add(Entry{Prefix: netip.PrefixFrom(a, 32), Expires: exp}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddOne1k(b *testing.B)   { benchAddOne(b, 1_000) }
func BenchmarkAddOne10k(b *testing.B)  { benchAddOne(b, 10_000) }
func BenchmarkAddOne100k(b *testing.B) { benchAddOne(b, 100_000) }
