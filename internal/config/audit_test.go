package config

import (
	"fmt"
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	cases := []struct {
		name  string
		edits []edit
		yaml  string
		path  string // "" for no warning at all
		at    string // marker on the warning's line; "" for line 0
		msg   string
	}{
		{name: "self-signed", edits: []edit{{"  certificates:\n    - name: main\n      cert: /etc/pbxgate/main.pem\n      key: /etc/pbxgate/main.key\n      hosts: [portal.example.com]\n", ""}, {"    certificate: main\n", ""}},
			path: "listeners[1].tls", at: "tls: required", msg: "a self-signed certificate is generated in /var/lib/pbxgate"},
		{name: "insecure backend", edits: []edit{{"ca: /etc/ca.pem", "insecure_skip_verify: true"}},
			path: "services[1].backend.insecure_skip_verify", at: "insecure_skip_verify", msg: "certificate is not verified"},
		{name: "plain ldap on public address", edits: []edit{{"protocols: [http]\n    default_service", "protocols: [http, ldap]\n    default_service"}},
			path: "listeners[0].tls", at: "- name: web", msg: "passwords cross the network in clear"},
		{name: "ldap on optional tls", edits: []edit{{"tls: required", "tls: optional"}},
			path: "listeners[1].tls", at: "tls: optional", msg: "also accepts plain LDAP"},
		{name: "admin beyond loopback", edits: []edit{{"address: 127.0.0.1:9190", "address: 0.0.0.0:9190"}},
			path: "admin.address", at: "0.0.0.0:9190", msg: "the token is then its only guard"},
		{name: "admin on ipv6 loopback", edits: []edit{{"address: 127.0.0.1:9190", "address: \"[::1]:9190\""}}},
		{name: "fraud disabled", edits: []edit{{"fraud:\n", "fraud:\n  enabled: false\n"}},
			path: "fraud.enabled", at: "enabled: false", msg: "automatic bans are off"},
		{name: "whitelist too wide", edits: []edit{{"[198.51.100.0/24, 2001:db8::/32]", "[0.0.0.0/1]"}},
			path: "fraud.whitelist[0]", at: "0.0.0.0/1", msg: "whitelists a large part of the internet"},
		{name: "firewall trusts everyone", edits: []edit{{"fraud:\n", "firewall:\n  trusted_networks: [\"::/1\"]\nfraud:\n"}},
			path: "firewall.trusted_networks[0]", at: "::/1", msg: "trusts (nearly) every address"},
		{name: "plain ldap on loopback", edits: []edit{{"protocols: [tcp]", "protocols: [tcp, ldap]"}}},
		{name: "plain ldap on ipv6 loopback", edits: []edit{{"protocols: [tcp]", "protocols: [tcp, ldap]"}, {`address: "127.0.0.1:1194"`, `address: "[::1]:1194"`}}},
		{name: "trust everyone", edits: []edit{{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: [10.0.0.0/8, 0.0.0.0/0]"}},
			path: "listeners[0].trusted_proxies[1]", at: "0.0.0.0/0", msg: "any client can claim any address"},
		{name: "trust everyone ipv6", edits: []edit{{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: [\"::/0\"]"}},
			path: "listeners[0].trusted_proxies[0]", at: "::/0", msg: "trusts forwarding headers from every source"},
		{name: "trusted proxies without http", edits: []edit{{"tcp_service: vpn", "tcp_service: vpn\n    trusted_proxies: [10.1.0.0/16]"}},
			path: "listeners[2].trusted_proxies", at: "10.1.0.0/16", msg: "ignored: the listener does not carry http"},
		{name: "certificate on plain listener", edits: []edit{{"default_service: portal", "default_service: portal\n    certificate: main # here"}},
			path: "listeners[0].certificate", at: "# here", msg: "ignored: the listener has tls: none"},
		{name: "strict sni on plain listener", edits: []edit{{"default_service: portal", "default_service: portal\n    strict_sni: true"}},
			path: "listeners[0].strict_sni", at: "strict_sni", msg: "ignored"},
		{name: "unreachable ldap service", edits: []edit{{"protocols: [http, ldap]", "protocols: [http]"}},
			path: "services[1]", at: "- name: dir", msg: `service "dir" is unreachable: no listener carries ldap`},
		{name: "unreachable tcp service", edits: []edit{{"      address: 10.0.0.3:1194\n", "      address: 10.0.0.3:1194\n  - name: vpn2 # here\n    protocol: tcp\n    backend: {address: \"10.0.0.4:1194\"}\n"}},
			path: "services[3]", at: "# here", msg: `"vpn2" is unreachable: no listener names it as tcp_service`},
		{name: "no services", yaml: "listeners:\n  - name: web\n    address: \":80\"\n",
			path: "services", msg: "no services: every request and connection is refused"},
		{name: "anonymous binds forwarded", edits: []edit{{"anonymous: refuse", "anonymous: dir"}},
			path: "ldap.anonymous", at: "anonymous: dir", msg: "readable from the internet without a password"},
		{name: "sip over websocket only", yaml: "listeners:\n  - name: wss\n    address: \":8089\"\n    protocols: [sip-ws]\nservices:\n  - name: pbx\n    protocol: sip\n    domains: [pbx.example.com]\n    backend: {address: \"10.0.0.5:5060\", websocket: \"ws://10.0.0.5:5066\"}\n"},
		{name: "sip-ws without websocket backend", yaml: "listeners:\n  - name: wss\n    address: \":8089\"\n    protocols: [sip-ws]\nservices:\n  - name: pbx\n    protocol: sip\n    domains: [pbx.example.com]\n    backend: {address: \"10.0.0.5:5060\"} # here\n",
			path: "services[0].backend", at: "# here", msg: "WebSocket (sip-ws) clients routed to it are refused"},
		{name: "slow first bytes", edits: []edit{{"first_bytes: 5s", "first_bytes: 1m"}},
			path: "timeouts.first_bytes", at: "first_bytes", msg: "1m lets a silent connection hold a slot"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.yaml
			if in == "" {
				in = apply(t, tc.edits...)
			}
			c, err := Parse([]byte(in), "test.yaml")
			if err != nil {
				t.Fatalf("want a valid config, got:\n%v", err)
			}
			w := c.Warnings()
			if tc.path == "" {
				if len(w) != 0 {
					t.Fatalf("want no warning, got %q", w)
				}
				return
			}
			line := 0
			if tc.at != "" {
				line = lineOf(t, in, tc.at)
			}
			assertWarning(t, w, "test.yaml", line, tc.path, tc.msg)
			if len(w) != 1 {
				t.Errorf("want exactly one warning, got %q", w)
			}
		})
	}
}

// assertWarning checks that warnings holds one at file:line for path whose
// message contains msg.
func assertWarning(t *testing.T, warnings []string, file string, line int, path, msg string) {
	t.Helper()
	prefix := fmt.Sprintf("%s:%d: %s: ", file, line, path)
	if line == 0 {
		prefix = fmt.Sprintf("%s: %s: ", file, path)
	}
	for _, w := range warnings {
		if strings.HasPrefix(w, prefix) && strings.Contains(w, msg) {
			return
		}
	}
	t.Fatalf("want a warning %q...%q, got %q", prefix, msg, warnings)
}
