package firewall

import (
	"net/netip"
	"testing"
)

func TestAllows(t *testing.T) {
	spec := Spec{
		Roles:     []string{RoleSIP, RoleAdmin, RoleTURN},
		TURNRelay: &PortRange{49152, 49200},
		AdminFrom: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")},
		AdminPort: 9443,
		Trusted:   []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:1::/48")},
		Listeners: []Listener{{Name: "https", Proto: "tcp", Port: 443}},
		Ports: []PortRule{
			{Proto: "tcp", Ports: Port(22), From: []netip.Prefix{netip.MustParsePrefix("::ffff:203.0.113.0/120")}},
			{Proto: "udp", Ports: PortRange{10000, 10010}},
		},
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		proto string
		port  uint16
		src   string
		want  bool
	}{
		{"tcp", 22, "203.0.113.9", true},        // port rule with From, mapped prefix
		{"tcp", 22, "::ffff:203.0.113.9", true}, // mapped source
		{"tcp", 22, "192.0.2.1", false},         // not in From
		{"tcp", 22, "198.51.100.7", true},       // trusted
		{"tcp", 22, "2001:db8:1::5", true},      // trusted v6
		{"tcp", 22, "2001:db8:2::5", false},     //
		{"tcp", 22, "127.0.0.1", true},          // loopback
		{"udp", 5060, "192.0.2.1", true},        // role sip
		{"tcp", 5061, "192.0.2.1", false},       // no sip-tls
		{"tcp", 9443, "192.0.2.1", true},        // admin from
		{"tcp", 9443, "203.0.113.1", false},     // admin not from
		{"tcp", 9190, "192.0.2.1", false},       // admin port moved
		{"udp", 49160, "203.0.113.1", true},     // relay
		{"tcp", 443, "203.0.113.1", true},       // listener
		{"udp", 443, "203.0.113.1", false},      // listener proto
		{"udp", 10005, "203.0.113.1", true},     // range
		{"udp", 10011, "203.0.113.1", false},    // past range
		{"tcp", 3478, "203.0.113.1", true},      // role turn
	} {
		if got := spec.Allows(tc.proto, tc.port, a(tc.src)); got != tc.want {
			t.Errorf("Allows(%s %d from %s) = %v, want %v", tc.proto, tc.port, tc.src, got, tc.want)
		}
	}
}

func TestAllowsGeo(t *testing.T) {
	spec := Spec{
		Roles:   []string{RoleSSH, RoleSIP, RoleWeb},
		Trusted: pfx("198.51.100.7/32"),
		Geo: []GeoRule{
			// Only FR reaches ssh; FR has no IPv6 network.
			{Proto: "tcp", Ports: []PortRange{Port(22)}, Allow: true, Countries: []string{"FR"}, V4: pfx("192.0.2.0/25")},
			// CN is denied SIP on both protocols.
			{Ports: []PortRange{{5060, 5061}}, Countries: []string{"CN"}, V4: pfx("203.0.113.0/24"), V6: pfx("2001:db8:c::/48")},
			// A udp-only rule does not touch tcp 443.
			{Proto: "udp", Ports: []PortRange{Port(443)}, Countries: []string{"CN"}, V4: pfx("203.0.113.0/24")},
		},
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto string
		port  uint16
		src   string
		want  bool
	}{
		{"tcp", 22, "192.0.2.1", true},        // FR
		{"tcp", 22, "::ffff:192.0.2.1", true}, // FR, mapped
		{"tcp", 22, "192.0.2.200", false},     // elsewhere
		{"tcp", 22, "2001:db8::1", false},     // no IPv6 in FR: all dropped
		{"tcp", 22, "198.51.100.7", true},     // trusted first
		{"tcp", 22, "127.0.0.1", true},        // loopback
		{"udp", 5060, "203.0.113.9", false},   // CN
		{"tcp", 5060, "2001:db8:c::1", false}, // CN v6
		{"udp", 5060, "192.0.2.200", true},    // elsewhere
		{"tcp", 443, "203.0.113.9", true},     // the udp rule does not cover tcp
		{"tcp", 80, "203.0.113.9", true},      // no rule on 80
		{"tcp", 3306, "192.0.2.1", false},     // not opened at all
	} {
		if got := spec.Allows(tc.proto, tc.port, netip.MustParseAddr(tc.src)); got != tc.want {
			t.Errorf("Allows(%s %d from %s) = %v, want %v", tc.proto, tc.port, tc.src, got, tc.want)
		}
	}
}
