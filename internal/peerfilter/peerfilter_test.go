package peerfilter

import (
	"net/netip"
	"strings"
	"testing"
)

func mustFilter(t testing.TB, allow ...string) *Filter {
	t.Helper()
	var ps []netip.Prefix
	for _, s := range allow {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	f, err := New(ps)
	if err != nil {
		t.Fatalf("New(%v): %v", allow, err)
	}
	return f
}

// lastAddr returns the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// reasonPrefix extracts the prefix from a range reason "name a.b.c.d/n".
func reasonPrefix(t *testing.T, reason string) netip.Prefix {
	t.Helper()
	i := strings.LastIndexByte(reason, ' ')
	p, err := netip.ParsePrefix(reason[i+1:])
	if err != nil {
		t.Fatalf("reason %q does not end in a prefix: %v", reason, err)
	}
	return p
}

// TestRangeBounds checks that the first and last address of every denied range
// are denied with a reason naming a listed range that contains them.
func TestRangeBounds(t *testing.T) {
	f := mustFilter(t)
	listed := map[netip.Prefix]string{}
	for _, r := range DeniedRanges() {
		listed[r.Prefix] = r.Name
	}
	for _, r := range DeniedRanges() {
		for _, a := range []netip.Addr{r.Prefix.Addr(), lastAddr(r.Prefix)} {
			t.Run(a.String(), func(t *testing.T) {
				ok, reason := f.Check(a)
				if ok {
					t.Fatalf("Check(%s) allowed, want denied (range %s %s)", a, r.Name, r.Prefix)
				}
				p := reasonPrefix(t, reason)
				name, isListed := listed[p]
				if !isListed || reason != name+" "+p.String() {
					t.Fatalf("Check(%s) reason %q names no listed range", a, reason)
				}
				if !p.Contains(a.Unmap()) {
					t.Fatalf("Check(%s) reason %q: range does not contain the address", a, reason)
				}
			})
		}
	}
}

// neighbours is, for every address just outside a denied range, whether Check
// allows it (false when it falls into another denied range).
var neighbours = map[string]bool{
	// IPv4.
	"1.0.0.0": true, "9.255.255.255": true, "11.0.0.0": true,
	"100.63.255.255": true, "100.128.0.0": true,
	"126.255.255.255": true, "128.0.0.0": true,
	"169.253.255.255": true, "169.255.0.0": true,
	"172.15.255.255": true, "172.32.0.0": true,
	"191.255.255.255": true, "192.0.1.0": true, "192.0.1.255": true, "192.0.3.0": true,
	"192.88.98.255": true, "192.88.100.0": true,
	"192.167.255.255": true, "192.169.0.0": true,
	"198.17.255.255": true, "198.20.0.0": true,
	"198.51.99.255": true, "198.51.101.0": true,
	"203.0.112.255": true, "203.0.114.0": true,
	"223.255.255.255": true,
	"239.255.255.255": false, // multicast, below 240/4
	"240.0.0.0":       false, // reserved, above multicast
	"255.255.255.254": false, // reserved 240/4, below broadcast
	// IPv6.
	"::": false, "::1": false, "::2": false, "::1:0:0": true,
	"::fffe:ffff:ffff": true, "::1:0:0:0": true,
	"64:ff9b::1:0:0": true, "64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff": true,
	"64:ff9b:0:ffff:ffff:ffff:ffff:ffff": true, "64:ff9b:2::": true,
	"ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "100:0:0:1::": true,
	"2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "2001:200::": true,
	"2001:1::":                               false, // inside 2001::/23, after Teredo
	"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff": true, "2001:db9::": true,
	"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "2003::": true,
	"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "fe00::": true,
	"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true,
	"fec0::": false, // site-local, after link-local
	"ff00::": false, // multicast, after site-local
	"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff": false,
	"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": false,
}

// TestNeighbours checks the addresses just outside every denied range, and
// that the neighbours table is complete.
func TestNeighbours(t *testing.T) {
	f := mustFilter(t)
	for _, r := range DeniedRanges() {
		if r.Prefix.Addr().Is4In6() {
			continue // IPv4-mapped: unmapping makes its neighbourhood the whole IPv4 space
		}
		for _, a := range []netip.Addr{r.Prefix.Addr().Prev(), lastAddr(r.Prefix).Next()} {
			if !a.IsValid() {
				continue // range at the edge of the address space
			}
			if _, listed := neighbours[a.String()]; !listed {
				t.Errorf("neighbour %s of %s missing from the neighbours table", a, r.Prefix)
			}
		}
	}
	for s, want := range neighbours {
		t.Run(s, func(t *testing.T) {
			ok, reason := f.Check(netip.MustParseAddr(s))
			if ok != want {
				t.Fatalf("Check(%s) = %v %q, want ok=%v", s, ok, reason, want)
			}
			if ok && reason != "" {
				t.Fatalf("Check(%s) allowed with reason %q, want empty", s, reason)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	def := mustFilter(t)
	withAllow := mustFilter(t, "10.20.0.0/16", "fd00:1::/32")
	zoned := netip.MustParseAddr("fe80::1").WithZone("eth0")
	tests := []struct {
		name   string
		f      *Filter
		addr   netip.Addr
		ok     bool
		reason string
	}{
		{"public v4", def, netip.MustParseAddr("8.8.8.8"), true, ""},
		{"public v6", def, netip.MustParseAddr("2606:4700::1111"), true, ""},
		{"loopback", def, netip.MustParseAddr("127.0.0.1"), false, "loopback 127.0.0.0/8"},
		{"mapped loopback", def, netip.MustParseAddr("::ffff:127.0.0.1"), false, "loopback 127.0.0.0/8"},
		{"mapped private", def, netip.MustParseAddr("::ffff:10.1.2.3"), false, "private-use 10.0.0.0/8"},
		{"mapped public", def, netip.MustParseAddr("::ffff:8.8.8.8"), true, ""},
		{"metadata", def, netip.MustParseAddr("169.254.169.254"), false, "link-local 169.254.0.0/16"},
		{"broadcast", def, netip.MustParseAddr("255.255.255.255"), false, "limited broadcast 255.255.255.255/32"},
		{"v6 loopback", def, netip.MustParseAddr("::1"), false, "loopback ::1/128"},
		{"v6 unspecified", def, netip.MustParseAddr("::"), false, "unspecified ::/128"},
		{"v4-compatible", def, netip.MustParseAddr("::10.0.0.1"), false, "IPv4-compatible (deprecated) ::/96"},
		{"nat64 loopback", def, netip.MustParseAddr("64:ff9b::7f00:1"), false, "NAT64 64:ff9b::/96"},
		{"6to4 private", def, netip.MustParseAddr("2002:a00:1::"), false, "6to4 2002::/16"},
		{"teredo", def, netip.MustParseAddr("2001:0:4136:e378::1"), false, "Teredo 2001::/32"},
		{"ula", def, netip.MustParseAddr("fd12:3456::1"), false, "unique-local fc00::/7"},
		{"v6 multicast", def, netip.MustParseAddr("ff02::1"), false, "multicast ff00::/8"},
		{"zone", def, zoned, false, "address with zone"},
		{"zone with allow", withAllow, netip.MustParseAddr("fd00:1::1").WithZone("eth0"), false, "address with zone"},
		{"invalid", def, netip.Addr{}, false, "invalid address"},
		{"nil filter denies", nil, netip.MustParseAddr("10.0.0.1"), false, "private-use 10.0.0.0/8"},
		{"nil filter allows public", nil, netip.MustParseAddr("8.8.8.8"), true, ""},
		{"allow first", withAllow, netip.MustParseAddr("10.20.0.0"), true, ""},
		{"allow inside", withAllow, netip.MustParseAddr("10.20.7.9"), true, ""},
		{"allow last", withAllow, netip.MustParseAddr("10.20.255.255"), true, ""},
		{"allow mapped", withAllow, netip.MustParseAddr("::ffff:10.20.1.1"), true, ""},
		{"allow below", withAllow, netip.MustParseAddr("10.19.255.255"), false, "private-use 10.0.0.0/8"},
		{"allow above", withAllow, netip.MustParseAddr("10.21.0.1"), false, "private-use 10.0.0.0/8"},
		{"allow other private", withAllow, netip.MustParseAddr("192.168.1.1"), false, "private-use 192.168.0.0/16"},
		{"allow v6", withAllow, netip.MustParseAddr("fd00:1:ffff::1"), true, ""},
		{"allow v6 outside", withAllow, netip.MustParseAddr("fd00:2::1"), false, "unique-local fc00::/7"},
		{"allow keeps public", withAllow, netip.MustParseAddr("8.8.4.4"), true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, reason := tt.f.Check(tt.addr)
			if ok != tt.ok || reason != tt.reason {
				t.Fatalf("Check(%s) = %v %q, want %v %q", tt.addr, ok, reason, tt.ok, tt.reason)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		allow   []netip.Prefix
		wantErr string
	}{
		{"empty", nil, ""},
		{"host bits masked", []netip.Prefix{netip.MustParsePrefix("10.20.3.4/16")}, ""},
		{"invalid", []netip.Prefix{{}}, "allow[0]"},
		{"bad bits", []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33)}, "invalid prefix"},
		{"mapped", []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}, "IPv4-mapped"},
		{"all reported", []netip.Prefix{{}, netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::ffff:0:0/96")}, "allow[0] \"invalid Prefix\": invalid prefix\nallow[2]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := New(tt.allow)
			if tt.wantErr == "" {
				if err != nil || f == nil {
					t.Fatalf("New = %v, %v; want a filter", f, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	// Host bits are masked: 10.20.3.4/16 opens 10.20.0.0/16.
	f := mustFilter(t, "10.20.3.4/16")
	if ok, _ := f.Check(netip.MustParseAddr("10.20.200.1")); !ok {
		t.Fatal("10.20.3.4/16 did not open 10.20.200.1")
	}
}

func TestDeniedRangesCopy(t *testing.T) {
	rs := DeniedRanges()
	rs[0].Name = "changed"
	if DeniedRanges()[0].Name == "changed" {
		t.Fatal("DeniedRanges returned the package's own slice")
	}
	for _, r := range rs {
		if !r.Prefix.IsValid() || r.Prefix != r.Prefix.Masked() {
			t.Errorf("range %v is not a canonical prefix", r.Prefix)
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	f := mustFilter(t, "10.20.0.0/16")
	addrs := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("10.20.1.1"),
		netip.MustParseAddr("::ffff:127.0.0.1"),
		netip.MustParseAddr("2606:4700::1111"),
		netip.MustParseAddr("fe80::1").WithZone("eth0"),
	}
	n := testing.AllocsPerRun(100, func() {
		for _, a := range addrs {
			f.Check(a)
		}
	})
	if n != 0 {
		t.Fatalf("Check allocates %v times per run, want 0", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	f := mustFilter(b, "10.20.0.0/16")
	addrs := []netip.Addr{
		netip.MustParseAddr("8.8.8.8"),
		netip.MustParseAddr("10.20.1.1"),
		netip.MustParseAddr("::ffff:127.0.0.1"),
		netip.MustParseAddr("2606:4700::1111"),
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		f.Check(addrs[i%len(addrs)])
	}
}
