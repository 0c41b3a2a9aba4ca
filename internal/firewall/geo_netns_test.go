package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/firewall/nft"
	"github.com/pbxgate/pbxgate/internal/geoip"
	"github.com/pbxgate/pbxgate/internal/geoip/geoiptest"
)

// TestGeoInNamespaces locates the lab's client addresses in a database
// written for the test and checks deny and allow rules from the client
// namespace, and replies to connections the server opens from a covered
// port.
func TestGeoInNamespaces(t *testing.T) {
	needPeers(t)
	// Client .2 is in FR, .3 in FR and trusted, .4 in DE (IPv4 only; its
	// IPv6 network carries only a registered country, as GeoLite2 stores
	// anycast), .5 is in no network of the database.
	l := newLab(t, 2, 3, 4, 5)
	v4, v6 := l.v4, l.v6
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	err := geoiptest.DB{Networks: []geoiptest.Network{
		{Prefix: v4(2) + "/32", Data: geoiptest.Country("FR")},
		{Prefix: v6(2) + "/128", Data: geoiptest.City("FR", "Paris")},
		{Prefix: v4(3) + "/32", Data: geoiptest.Country("FR")},
		{Prefix: v6(3) + "/128", Data: geoiptest.Country("FR")},
		{Prefix: v4(4) + "/32", Data: geoiptest.Country("DE")},
		{Prefix: v6(4) + "/128", Data: geoiptest.RegisteredOnly("DE")},
	}}.WriteFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := geoip.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	nets, _, err := db.Select(context.Background(), []string{"FR"}, []string{"DE"})
	if err != nil {
		t.Fatal(err)
	}
	fr, de := nets[0], nets[1]
	// FR's two addresses merge into one /31 when adjacent.
	if len(fr.V4) == 0 || len(fr.V6) == 0 || len(de.V4) != 1 || len(de.V6) != 0 ||
		!fr.V4[0].Contains(netip.MustParseAddr(v4(2))) || !fr.V6[len(fr.V6)-1].Contains(netip.MustParseAddr(v6(3))) {
		t.Fatalf("located FR %v, DE %v", fr, de)
	}

	base := Spec{
		Roles:   []string{"sip"}, // 5060 tcp+udp
		Trusted: pfx(v4(3)+"/32", v6(3)+"/128"),
		Ports: []PortRule{
			{Proto: "tcp", Ports: Port(5080)},
			{Proto: "udp", Ports: PortRange{7000, 7010}},
		},
	}
	serve(t, l.srv, []int{5060, 5080}, []int{5060, 7005})
	// For connections the server opens; bound to each address, so that UDP
	// answers come from the address asked.
	serveOn(t, l.cli, []string{v4(2), v6(2), v4(4), v6(4), v4(5), v6(5)}, []int{8000}, []int{8000})
	r := &nft.Exec{NetNS: l.srv}
	apply := func(t *testing.T, s Spec) {
		t.Helper()
		script, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Check(script); err != nil {
			t.Fatal(err)
		}
		if err := r.Apply(script); err != nil {
			t.Fatal(err)
		}
	}
	// outbound opens connections from the server, from local port
	// fromPort, to each client address's port 8000: every one must get
	// its reply.
	outbound := func(t *testing.T, fromPort int, clients ...string) {
		t.Helper()
		for i, c := range clients {
			for _, proto := range []string{"tcp", "udp"} {
				src := v4(1)
				if strings.Contains(c, ":") {
					src = v6(1)
				}
				// A new local port per connection: TCP's TIME_WAIT keeps
				// the last one.
				port := fromPort + i
				if proto == "tcp" {
					port += 50
				}
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					if err = inNS(l.srv, func() error { return dialProbe(proto, src, port, c, 8000, true) }); err == nil {
						break
					}
				}
				if err != nil {
					t.Errorf("server %s [%s]:%d -> [%s]:8000: %v", proto, src, port, c, err)
				}
			}
		}
	}

	t.Run("deny", func(t *testing.T) {
		s := base
		s.Geo = []GeoRule{
			{Ports: []PortRange{Port(5060)}, Countries: []string{"FR"}, V4: fr.V4, V6: fr.V6},
			{Ports: []PortRange{{7100, 7199}}, Countries: []string{"FR"}, V4: fr.V4, V6: fr.V6},
		}
		apply(t, s)
		var probes []probe
		for _, proto := range []string{"tcp", "udp"} {
			probes = append(probes,
				probe{proto, v4(2), v4(1), 5060, false}, // FR
				probe{proto, v6(2), v6(1), 5060, false},
				probe{proto, v4(3), v4(1), 5060, true}, // FR but trusted
				probe{proto, v6(3), v6(1), 5060, true},
				probe{proto, v4(4), v4(1), 5060, true}, // DE
				probe{proto, v6(4), v6(1), 5060, true}, // not located
				probe{proto, v4(5), v4(1), 5060, true}, // not in the database
				probe{proto, v6(5), v6(1), 5060, true},
			)
		}
		probes = append(probes,
			probe{"tcp", v4(2), v4(1), 5080, true}, // a port no rule covers
			probe{"udp", v6(2), v6(1), 7005, true},
		)
		l.check(t, probes)
		// Replies from FR to the local ports 7100-7199 pass.
		outbound(t, 7100, v4(2), v6(2))
	})

	t.Run("allow", func(t *testing.T) {
		s := base
		s.Geo = []GeoRule{
			{Ports: []PortRange{Port(5060)}, Allow: true, Countries: []string{"FR"}, V4: fr.V4, V6: fr.V6},
			// DE has no IPv6 network: every IPv6 source is dropped on 5080.
			{Proto: "tcp", Ports: []PortRange{Port(5080)}, Allow: true, Countries: []string{"DE"}, V4: de.V4, V6: de.V6},
			{Ports: []PortRange{{7100, 7199}}, Allow: true, Countries: []string{"FR"}, V4: fr.V4, V6: fr.V6},
		}
		apply(t, s)
		var probes []probe
		for _, proto := range []string{"tcp", "udp"} {
			probes = append(probes,
				probe{proto, v4(2), v4(1), 5060, true}, // FR
				probe{proto, v6(2), v6(1), 5060, true},
				probe{proto, v4(3), v4(1), 5060, true}, // trusted
				probe{proto, v6(3), v6(1), 5060, true},
				probe{proto, v4(4), v4(1), 5060, false}, // DE
				probe{proto, v6(4), v6(1), 5060, false}, // not located
				probe{proto, v4(5), v4(1), 5060, false}, // not in the database
				probe{proto, v6(5), v6(1), 5060, false},
			)
		}
		probes = append(probes,
			probe{"tcp", v4(4), v4(1), 5080, true}, // DE
			probe{"tcp", v6(4), v6(1), 5080, false},
			probe{"tcp", v4(2), v4(1), 5080, false},
			probe{"tcp", v6(2), v6(1), 5080, false}, // no IPv6 in DE
			probe{"tcp", v6(3), v6(1), 5080, true},  // trusted
			probe{"udp", v4(4), v4(1), 7005, true},  // a port no rule covers
		)
		l.check(t, probes)
		// Replies from outside FR to the local ports 7100-7199 pass.
		outbound(t, 7120, v4(4), v6(4), v4(5), v6(5))
	})

	t.Run("none", func(t *testing.T) {
		apply(t, base)
		list, err := r.List()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(list, "geo") {
			t.Errorf("GeoIP objects left after a script without rules:\n%s", list)
		}
		l.check(t, []probe{
			{"tcp", v4(2), v4(1), 5060, true},
			{"udp", v6(5), v6(1), 5060, true},
			{"tcp", v6(4), v6(1), 5080, true},
		})
	})
}

// TestGeoScriptsReplaceEachOther: after any script, the table is what that
// script alone makes, whatever GeoIP rules the one before had.
func TestGeoScriptsReplaceEachOther(t *testing.T) {
	needPeers(t)
	rule := func(i int) GeoRule {
		return GeoRule{Proto: []string{"", "tcp", "udp"}[i%3], Ports: []PortRange{Port(uint16(6000 + i))}, Allow: i%2 == 0,
			Countries: []string{"FR"}, V4: pfx(fmt.Sprintf("198.51.100.%d/32", i)), V6: pfx(fmt.Sprintf("2001:db8::%d/128", i))}
	}
	specs := map[string]Spec{}
	for _, n := range []int{0, 1, 3, MaxGeoRules} {
		s := Spec{Roles: []string{"ssh"}}
		for i := range n {
			s.Geo = append(s.Geo, rule(i))
		}
		specs[fmt.Sprint(n)] = s
	}
	fresh := map[string]string{} // spec name -> listing after applying it alone
	for name, s := range specs {
		script, err := Render(s)
		if err != nil {
			t.Fatal(err)
		}
		r := &nft.Exec{NetNS: newNS(t)}
		if err := r.Apply(script); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if fresh[name], err = r.List(); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(fresh[fmt.Sprint(MaxGeoRules)], "\tset geo"); n != 2*MaxGeoRules {
		t.Errorf("%d GeoIP sets for %d rules", n, MaxGeoRules)
	}
	for _, seq := range [][]string{{"3", "1"}, {"1", "3"}, {"3", "0"}, {"0", "3"}, {"32", "0"}, {"32", "1", "32"}} {
		t.Run(strings.Join(seq, "-then-"), func(t *testing.T) {
			r := &nft.Exec{NetNS: newNS(t)}
			for _, name := range seq {
				script, _ := Render(specs[name])
				if err := r.Check(script); err != nil {
					t.Fatalf("check %s: %v", name, err)
				}
				if err := r.Apply(script); err != nil {
					t.Fatalf("apply %s: %v", name, err)
				}
			}
			got, err := r.List()
			if err != nil {
				t.Fatal(err)
			}
			if want := fresh[seq[len(seq)-1]]; got != want {
				t.Errorf("table differs from a fresh apply:\n%s", Diff(want, got))
			}
		})
	}
}

// TestGeoLargeSetsLoad loads a rule with 100k IPv4 and 20k IPv6 elements
// and logs how long nft takes.
func TestGeoLargeSetsLoad(t *testing.T) {
	needPeers(t)
	g := GeoRule{Ports: []PortRange{Port(5060)}, Countries: []string{"CN"}}
	for i := range 100_000 {
		// Every other /24 from 11.0.0.0: none adjacent, so none merge.
		a := 11<<24 + uint32(i)*512
		g.V4 = append(g.V4, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), 0}), 24))
	}
	for i := range 20_000 {
		g.V6 = append(g.V6, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x24, 0x00, byte(i >> 7), byte(i << 1)}), 32))
	}
	spec := Spec{Roles: []string{"sip"}, Geo: []GeoRule{g}}
	start := time.Now()
	script, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Render: %v, %d bytes", time.Since(start), len(script))
	if n := strings.Count(script, "\n\t") - strings.Count(Must(Render(Spec{Roles: []string{"sip"}})), "\n\t"); n < 120_000 {
		t.Fatalf("script has %d more indented lines than without GeoIP, want one per element", n)
	}
	r := &nft.Exec{NetNS: newNS(t), Timeout: time.Minute}
	for _, step := range []struct {
		name   string
		script string
	}{
		{"check", script}, {"load", script}, {"reload", script}, {"remove", Must(Render(Spec{Roles: []string{"sip"}}))},
	} {
		start := time.Now()
		var err error
		if step.name == "check" {
			err = r.Check(step.script)
		} else {
			err = r.Apply(step.script)
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("nft %s: %v", step.name, time.Since(start))
	}
	if list, err := r.List(); err != nil || strings.Contains(list, "geo") {
		t.Errorf("after removal: %v\n%.2000s", err, list)
	}
}

func Must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
