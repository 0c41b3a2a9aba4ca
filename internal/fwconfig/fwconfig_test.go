package fwconfig

import (
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/firewall"
	"github.com/pbxgate/pbxgate/internal/geoip/geoiptest"
)

func parse(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSpec(t *testing.T) {
	c := parse(t, `
listeners:
  - {name: web, address: ":443"}
  - {name: sip-udp, address: "0.0.0.0:5080", transport: udp}
  - {name: sip-tcp, address: "[::]:5080", protocols: [sip]}
  - {name: local, address: "127.0.0.1:8080"}
  - {name: local6, address: "[::1]:8081"}
  - {name: turn, address: ":3478", transport: udp, protocols: [turn]}
turn:
  realm: example.com
  public_addresses: [203.0.113.10]
  rest_secrets: ["0123456789abcdef"]
  relay_ports: {min: 50000, max: 50100}
admin:
  address: "10.0.0.1:9443"
firewall:
  roles: [ssh, admin]
  admin_from: [192.0.2.0/24]
  trusted_networks: [198.51.100.0/24, "2001:db8::/32"]
  ports:
    - {proto: udp, port: "10000-20000", comment: RTP}
    - {proto: tcp, port: "5432", from: [10.1.0.0/16]}
  sip_flood_limit: {rate: 40}
`)
	spec, warnings, err := Spec(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings %q", warnings)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	wantListeners := []firewall.Listener{
		{Name: "web", Proto: "tcp", Port: 443}, {Name: "sip-udp", Proto: "udp", Port: 5080},
		{Name: "sip-tcp", Proto: "tcp", Port: 5080}, {Name: "turn", Proto: "udp", Port: 3478},
	}
	if !slices.Equal(spec.Listeners, wantListeners) {
		t.Errorf("listeners %+v\nwant %+v", spec.Listeners, wantListeners)
	}
	if spec.TURNRelay == nil || *spec.TURNRelay != (firewall.PortRange{Min: 50000, Max: 50100}) {
		t.Errorf("relay %v", spec.TURNRelay)
	}
	if spec.AdminPort != 9443 || len(spec.AdminFrom) != 1 {
		t.Errorf("admin %d %v", spec.AdminPort, spec.AdminFrom)
	}
	if fl := spec.SIPFloodLimit; fl == nil || fl.Rate != 40 || fl.Burst != 40 || !slices.Equal(fl.Ports, []uint16{5080}) {
		t.Errorf("flood %+v", fl)
	}
	if len(spec.Ports) != 2 || spec.Ports[0].Ports != (firewall.PortRange{Min: 10000, Max: 20000}) || spec.Ports[1].From[0] != netip.MustParsePrefix("10.1.0.0/16") {
		t.Errorf("ports %+v", spec.Ports)
	}
	if len(spec.Trusted) != 2 {
		t.Errorf("trusted %v", spec.Trusted)
	}
	script, err := firewall.Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tcp dport 9443 accept", "udp dport { 3478, 5080, 10000-20000, 50000-50100 } accept"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
}

func TestSpecWithoutListenersOrSSH(t *testing.T) {
	c := parse(t, `
listeners: [{name: web, address: ":443"}]
firewall: {open_listeners: false}
`)
	spec, warnings, err := Spec(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Listeners) != 0 || spec.SIPFloodLimit != nil || spec.TURNRelay != nil {
		t.Errorf("spec %+v", spec)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "reachable over SSH from nowhere") {
		t.Errorf("warnings %q", warnings)
	}
	c = parse(t, `
listeners: [{name: web, address: ":443"}]
firewall: {trusted_networks: [192.0.2.0/24], sip_flood_limit: {rate: 5}}
`)
	spec, warnings, err = Spec(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "only from trusted_networks") {
		t.Errorf("warnings %q", warnings)
	}
	if fl := spec.SIPFloodLimit; fl == nil || len(fl.Ports) != 0 {
		t.Errorf("flood limit without sip listeners: %+v (want the default ports)", fl)
	}
}

func TestSpecGeoIP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "country.mmdb")
	err := geoiptest.DB{Networks: []geoiptest.Network{
		{Prefix: "192.0.2.0/24", Data: geoiptest.Country("FR")},
		{Prefix: "198.51.100.0/24", Data: geoiptest.Country("DE")},
		{Prefix: "2001:db8:f0::/48", Data: geoiptest.Country("FR")},
	}}.WriteFile(db)
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, `
listeners: [{name: web, address: ":443"}]
firewall:
  roles: [ssh, sip]
  geoip:
    database: `+db+`
    rules:
      - {proto: udp, ports: ["5060", "10000-10010"], allow: [fr, UK]}
      - {ports: ["443"], deny: [DE]}
`)
	spec, warnings, err := Spec(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "no network in UK") {
		t.Errorf("warnings %q", warnings)
	}
	if len(spec.Geo) != 2 {
		t.Fatalf("geo %+v", spec.Geo)
	}
	allow, deny := spec.Geo[0], spec.Geo[1]
	if !allow.Allow || allow.Proto != "udp" || !slices.Equal(allow.Countries, []string{"FR", "UK"}) ||
		!slices.Equal(allow.Ports, []firewall.PortRange{{Min: 5060, Max: 5060}, {Min: 10000, Max: 10010}}) ||
		!slices.Equal(allow.V4, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) ||
		!slices.Equal(allow.V6, []netip.Prefix{netip.MustParsePrefix("2001:db8:f0::/48")}) {
		t.Errorf("allow rule %+v", allow)
	}
	if deny.Allow || deny.Proto != "" || !slices.Equal(deny.V4, []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}) || len(deny.V6) != 0 {
		t.Errorf("deny rule %+v", deny)
	}
	if spec.Allows("tcp", 443, netip.MustParseAddr("198.51.100.9")) || !spec.Allows("udp", 5060, netip.MustParseAddr("192.0.2.9")) ||
		spec.Allows("udp", 5060, netip.MustParseAddr("203.0.113.9")) {
		t.Error("Allows disagrees with the GeoIP rules")
	}

	c.Firewall.GeoIP.Database = filepath.Join(t.TempDir(), "missing.mmdb")
	if _, _, err := Spec(c); err == nil || !strings.Contains(err.Error(), "firewall.geoip.database") {
		t.Errorf("missing database: %v", err)
	}
}
