package kernelbl

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/netnstest"
)

// coverage reads a set and describes what it drops, "lo-hi timeout" per
// range, adjacent ranges with the same timeout merged: what the set does,
// whichever way its elements were cut.
func coverage(t testing.TB, ns *netnstest.NS, name string) []string {
	t.Helper()
	type r struct {
		lo, hi netip.Addr
		tmo    time.Duration
	}
	var rs []r
	for lo, v := range readSet(t, ns, name) {
		rs = append(rs, r{lo, v.hi, v.timeout})
	}
	slices.SortFunc(rs, func(a, b r) int { return a.lo.Compare(b.lo) })
	var out []r
	for _, x := range rs {
		if n := len(out); n > 0 && out[n-1].tmo == x.tmo && out[n-1].hi.Next() == x.lo {
			out[n-1].hi = x.hi
			continue
		}
		out = append(out, x)
	}
	s := make([]string, len(out))
	for i, x := range out {
		s[i] = fmt.Sprintf("%s-%s %v", x.lo, x.hi, x.tmo)
	}
	return s
}

// expected is coverage for the wanted entries, from normalize.
func expected(want map[netip.Prefix]time.Time, now time.Time, v4 bool) []string {
	var list []Entry
	for p, e := range want {
		list = append(list, Entry{p, e})
	}
	r4, r6, _ := normalize(list, now)
	rs := r6
	if v4 {
		rs = r4
	}
	out := make([]string, len(rs))
	for i, x := range rs {
		var tmo time.Duration
		if x.exp != forever {
			tmo = max(time.Duration(x.exp-now.UnixNano()), time.Second)
		}
		out[i] = fmt.Sprintf("%s-%s %v", x.lo.addr(v4), x.hi.addr(v4), tmo)
	}
	return out
}

// TestAddOneAtATime: Adds arriving one by one (some taking the fast path
// for prefixes that overlap nothing wanted, some the full path) leave the
// kernel dropping exactly what the wanted entries say.
func TestAddOneAtATime(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	clk := &clock{time.Now().Truncate(time.Second)}
	s := newSync(t, ns, Options{Now: clk.now, Jitter: -1})
	h1, h2 := clk.t.Add(time.Hour), clk.t.Add(2*time.Hour)
	want := map[netip.Prefix]time.Time{}
	steps := []struct {
		name string
		add  []Entry
	}{
		{"first add, before the mirror is read", []Entry{{pfx("192.0.2.10"), h1}}},
		{"disjoint host", []Entry{{pfx("192.0.2.20"), h1}}},
		{"adjacent host, same expiry", []Entry{{pfx("192.0.2.21"), h1}}},
		{"batch with a key twice: the last wins", []Entry{{pfx("198.51.100.1"), h1}, {pfx("198.51.100.2"), h2}, {pfx("198.51.100.1"), h2}}},
		{"batch overlapping itself", []Entry{{pfx("198.51.100.64/26"), h1}, {pfx("198.51.100.70"), h2}}},
		{"IPv6 host", []Entry{{pfx("2001:db8::1"), h2}}},
		{"IPv6 network around nothing", []Entry{{pfx("2001:db8:1::/48"), h1}}},
		{"IPv6 host inside a wanted network", []Entry{{pfx("2001:db8:1::5"), h2}}},
		{"network over wanted hosts", []Entry{{pfx("192.0.2.0/24"), h2}}},
		{"host inside a wanted network, outliving it", []Entry{{pfx("192.0.2.77"), time.Time{}}}},
		{"re-added host, new expiry", []Entry{{pfx("192.0.2.10"), time.Time{}}}},
		{"expired", []Entry{{pfx("203.0.113.9"), clk.t.Add(-time.Second)}}},
		{"IPv4-mapped host", []Entry{{pfx("::ffff:203.0.113.30"), h1}}},
	}
	for i, st := range steps {
		if err := s.Add(st.add...); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		// No step may need the sets read again (a batch the kernel
		// refused): the fast path must only take what overlaps nothing.
		s.mu.Lock()
		reread := !s.readAt.IsZero()
		s.readAt = time.Time{} // marks the read done by the first step
		s.mu.Unlock()
		if reread && i > 0 {
			t.Errorf("%s: the sets were read from the kernel again", st.name)
		}
		for _, e := range st.add {
			p, _ := canon(e.Prefix)
			want[p] = e.Expires
		}
		for _, set := range []string{Set4Name, Set6Name} {
			got, exp := coverage(t, ns, set), expected(want, clk.t, set == Set4Name)
			if !slices.Equal(got, exp) {
				t.Errorf("after %s: %s drops\n%v\nwant\n%v", st.name, set, got, exp)
			}
		}
	}
}

// TestAddFastPathThenFull: a host added next to another with the same
// expiry is sent on its own (the fast path does not rewrite neighbours);
// the next full apply merges the two.
func TestAddFastPathThenFull(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	clk := &clock{time.Now()}
	s := newSync(t, ns, Options{Now: clk.now, Jitter: -1})
	h := clk.t.Add(time.Hour)
	if err := s.Reconcile([]Entry{{pfx("192.0.2.20"), h}, {pfx("198.51.100.1"), h}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(Entry{pfx("192.0.2.21"), h}); err != nil {
		t.Fatal(err)
	}
	a20, a21 := netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")
	got := readSet(t, ns, Set4Name)
	if got[a20].hi != a20 || got[a21].hi != a21 {
		t.Errorf("after a lone Add: %v, want .20 and .21 as ranges of their own", got)
	}
	if err := s.Remove(pfx("198.51.100.1")); err != nil { // a full apply
		t.Fatal(err)
	}
	got = readSet(t, ns, Set4Name)
	if _, ok := got[a21]; len(got) != 1 || got[a20].hi != a21 || ok {
		t.Errorf("after a full apply: %v, want one range .20-.21", got)
	}
}

// TestAddRepairsTamperedKernel: when the kernel holds an element the
// mirror does not know (added by hand), a fast Add the kernel refuses is
// retried by the full path, which reads the sets again and wins.
func TestAddRepairsTamperedKernel(t *testing.T) {
	netnstest.NeedPeers(t)
	ns := netnstest.NewNS(t)
	clk := &clock{time.Now()}
	s := newSync(t, ns, Options{Now: clk.now, Jitter: -1})
	h := clk.t.Add(time.Hour)
	if err := s.Reconcile([]Entry{{pfx("192.0.2.1"), h}}); err != nil {
		t.Fatal(err)
	}
	ns.Exec(t, "nft", "add", "element", "inet", TableName, Set4Name, "{ 203.0.113.0/24 }")
	if err := s.Add(Entry{pfx("203.0.113.5"), h}); err != nil {
		t.Fatalf("Add over a hand-made element: %v", err)
	}
	want := map[netip.Prefix]time.Time{pfx("192.0.2.1"): h, pfx("203.0.113.5"): h}
	if got, exp := coverage(t, ns, Set4Name), expected(want, clk.t, true); !slices.Equal(got, exp) {
		t.Errorf("bl4 drops %v, want %v", got, exp)
	}
}
