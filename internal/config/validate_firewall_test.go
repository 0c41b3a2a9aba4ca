package config

import (
	"strings"
	"testing"
	"time"
)

const firewallBase = `
listeners:
  - {name: web, address: ":80"}
admin:
  address: "0.0.0.0:9190"
firewall:
  roles: [sip, ssh]
  trusted_networks: [198.51.100.0/24]
  ports:
    - {proto: udp, port: "10000-20000", comment: "RTP"}
`

func TestValidateFirewall(t *testing.T) {
	checkEdits(t, firewallBase, []editCase{
		{name: "base", from: "", to: ""},
		{name: "admin role", from: "[sip, ssh]", to: "[sip, ssh, admin]\n  admin_from: [192.0.2.0/24]"},
		{name: "unknown role", from: "[sip, ssh]", to: "[sip, rtp]", path: "firewall.roles[1]", msg: `"rtp" is not a role`},
		{name: "role twice", from: "[sip, ssh]", to: "[sip, sip]", path: "firewall.roles[1]", msg: "listed twice"},
		{name: "turn role without turn listener", from: "[sip, ssh]", to: "[turn]", path: "firewall.roles", msg: "no listener carries turn"},
		{name: "admin without admin_from", from: "[sip, ssh]", to: "[admin]", path: "firewall.admin_from", msg: "required with role admin"},
		{name: "admin on loopback", from: "\"0.0.0.0:9190\"\nfirewall:\n  roles: [sip, ssh]", to: "\"127.0.0.1:9190\"\nfirewall:\n  roles: [admin]\n  admin_from: [192.0.2.0/24]", path: "firewall.roles", msg: "loopback only"},
		{name: "admin_from without role", from: "  ports:", to: "  admin_from: [192.0.2.0/24]\n  ports:", path: "firewall.admin_from", msg: "role admin is not"},
		{name: "bad trusted network", from: "198.51.100.0/24", to: "198.51.100.1/24", path: "firewall.trusted_networks[0]", msg: "host bits"},
		{name: "bad proto", from: "proto: udp", to: "proto: sctp", path: "firewall.ports[0].proto", msg: "not one of tcp, udp"},
		{name: "bad range", from: `"10000-20000"`, to: `"20000-10000"`, path: "firewall.ports[0].port", msg: "ends before it starts"},
		{name: "no port", from: `, port: "10000-20000"`, to: "", path: "firewall.ports[0].port", msg: "required"},
		{name: "quote in comment", from: `"RTP"`, to: `"R\"TP"`, path: "firewall.ports[0].comment", msg: "without quotes"},
		{name: "flood limit", from: "  ports:", to: "  sip_flood_limit: {rate: 50, ports: [5060]}\n  ports:"},
		{name: "flood ports without rate", from: "  ports:", to: "  sip_flood_limit: {ports: [5060]}\n  ports:", path: "firewall.sip_flood_limit.rate", msg: "required when"},
		{name: "flood port 0", from: "  ports:", to: "  sip_flood_limit: {rate: 5, ports: [0]}\n  ports:", path: "firewall.sip_flood_limit.ports[0]", msg: "out of range"},
		{name: "geoip", from: "  ports:", to: "  geoip: {database: /g.mmdb, rules: [{ports: [\"5060\"], allow: [de, AT]}]}\n  ports:"},
		{name: "geoip without database", from: "  ports:", to: "  geoip: {rules: [{ports: [\"5060\"], deny: [KP]}]}\n  ports:", path: "firewall.geoip.database", msg: "required"},
		{name: "geoip allow and deny", from: "  ports:", to: "  geoip: {database: /g.mmdb, rules: [{ports: [\"5060\"], allow: [DE], deny: [KP]}]}\n  ports:", path: "firewall.geoip.rules[0]", msg: "not both"},
		{name: "geoip neither", from: "  ports:", to: "  geoip: {database: /g.mmdb, rules: [{ports: [\"5060\"]}]}\n  ports:", path: "firewall.geoip.rules[0]", msg: "needs allow or deny"},
		{name: "geoip bad country", from: "  ports:", to: "  geoip: {database: /g.mmdb, rules: [{ports: [\"5060\"], deny: [DEU]}]}\n  ports:", path: "firewall.geoip.rules[0].deny[0]", msg: "two-letter"},
		{name: "geoip no ports", from: "  ports:", to: "  geoip: {database: /g.mmdb, rules: [{deny: [KP]}]}\n  ports:", path: "firewall.geoip.rules[0].ports", msg: "required"},
		{name: "test duration too short", from: "  ports:", to: "  test_duration: 5s\n  ports:", path: "firewall.test_duration", msg: "out of range"},
		{name: "resync too long", from: "  ports:", to: "  kernel_blacklist: {enabled: true, resync: 2h}\n  ports:", path: "firewall.kernel_blacklist.resync", msg: "out of range"},
	}, nil)
}

// editCase is a one-replacement edit of a base configuration and the
// problem it must cause ("" path: it stays valid).
type editCase struct {
	name      string
	from, to  string
	path, msg string
}

// checkEdits parses base with each edit applied and checks the problem it
// reports; valid, if not nil, checks the configurations that stay valid.
func checkEdits(t *testing.T, base string, cases []editCase, valid func(*testing.T, *Config)) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := base
			if tc.from != "" {
				if !strings.Contains(y, tc.from) {
					t.Fatalf("base has no %q", tc.from)
				}
				y = strings.Replace(y, tc.from, tc.to, 1)
			}
			c, err := Parse([]byte(y), "t.yaml")
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				if valid != nil {
					valid(t, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.path+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err %v\nwant %s: ...%s", err, tc.path, tc.msg)
			}
		})
	}
}

func TestFirewallDefaults(t *testing.T) {
	c, err := Parse([]byte("data_dir: /srv/pbx\nlisteners: [{name: web, address: \":80\"}]\nfirewall: {sip_flood_limit: {rate: 40}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := c.Firewall
	if f.StateDir != "/srv/pbx/firewall" || f.TestDuration.D() != 10*time.Minute || !*f.OpenListeners ||
		f.SIPFloodLimit.Burst != 40 || f.KernelBlacklist.Resync.D() != time.Minute || f.KernelBlacklist.Enabled {
		t.Errorf("defaults %+v", f)
	}
}
