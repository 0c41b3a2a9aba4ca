package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// baseYAML is valid and draws no warning. Cases edit it by replacing one
// unique piece of text, so the line of every problem is known.
const baseYAML = `data_dir: /var/lib/pbxgate
log:
  level: info
  format: text
timeouts:
  first_bytes: 5s
  idle: 5m
limits:
  max_connections: 100
  max_header_bytes: 65536
  ldap_max_message: 65536
  backend_idle_conns: 16
  sniff_bytes: 8192
tls:
  min_version: "1.2"
  certificates:
    - name: main
      cert: /etc/pbxgate/main.pem
      key: /etc/pbxgate/main.key
      hosts: [portal.example.com]
listeners:
  - name: web
    address: ":80"
    protocols: [http]
    default_service: portal
    trusted_proxies: [10.0.0.0/8]
  - name: secure
    address: "[::]:443"
    tls: required
    certificate: main
    protocols: [http, ldap]
  - name: raw
    address: "127.0.0.1:1194"
    protocols: [tcp]
    tcp_service: vpn
services:
  - name: portal
    protocol: http
    hosts: [portal.example.com]
    backend:
      address: 10.0.0.1:80
    paths:
      deny:
        - "= /login.php"
      allow:
        - /app/
        - path: /cdr/*.php
          methods: [POST]
          networks: [10.20.0.0/24, 10.9.9.9]
    reject_statuses: [401, 403]
  - name: dir
    protocol: ldap
    domains: [example.com, EXAMPLE]
    backend:
      address: ldap.internal:636
      tls: true
      ca: /etc/ca.pem
  - name: vpn
    protocol: tcp
    backend:
      address: 10.0.0.3:1194
ldap:
  anonymous: refuse
  default_service: dir
fraud:
  suspicious_per_minute: 10
  blacklist_for: 30m
  blacklist_max: 24h
  recidive_window: 7d
  weights:
    rejected_by_service: 1
    reasons: {denied_path: 2}
  whitelist: [198.51.100.0/24, 2001:db8::/32]
admin:
  address: 127.0.0.1:9190
  socket: /run/pbxgate/admin.sock
store:
  backend: bolt
`

// edit is one change to baseYAML.
type edit struct {
	old, new string
}

// apply returns baseYAML with every edit made; each old text must occur
// exactly once.
func apply(t *testing.T, edits ...edit) string {
	t.Helper()
	s := baseYAML
	for _, e := range edits {
		if n := strings.Count(s, e.old); n != 1 {
			t.Fatalf("test bug: %q occurs %d times in the base config", e.old, n)
		}
		s = strings.Replace(s, e.old, e.new, 1)
	}
	return s
}

// lineOf returns the 1-based line of the first line containing marker.
func lineOf(t *testing.T, s, marker string) int {
	t.Helper()
	for i, l := range strings.Split(s, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("test bug: marker %q not found", marker)
	return 0
}

func TestBaseConfigIsValidAndQuiet(t *testing.T) {
	c, err := Parse([]byte(baseYAML), "test.yaml")
	if err != nil {
		t.Fatalf("base config: %v", err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("base config has warnings: %q", w)
	}
}

type problemCase struct {
	name  string
	edits []edit
	yaml  string // whole input instead of edits
	path  string // wanted problem's field path; "" with msg "" for a valid config
	at    string // marker on the wanted line; default: the first line of the last edit's new text
	line  int    // explicit wanted line; -1 for none
	msg   string // substring of the wanted message
	more  bool   // other problems are expected too
}

func TestValidationProblems(t *testing.T) {
	cases := []problemCase{
		// log
		{name: "log level", edits: []edit{{"level: info", "level: verbose"}}, path: "log.level", msg: `"verbose" is not one of debug, info, warn, error`},
		{name: "log format", edits: []edit{{"format: text", "format: xml"}}, path: "log.format", msg: "not one of text, json"},

		// timeouts
		{name: "negative timeout", edits: []edit{{"first_bytes: 5s", "first_bytes: -5s"}}, path: "timeouts.first_bytes", msg: `invalid duration "-5s"`},
		{name: "zero timeout", edits: []edit{{"idle: 5m", "idle: 0s"}}, path: "timeouts.idle", msg: "must be positive"},
		{name: "duration words", edits: []edit{{"idle: 5m", "idle: 5 minutes"}}, path: "timeouts.idle", msg: `invalid duration "5 minutes"`},
		{name: "duration without unit", edits: []edit{{"idle: 5m", "idle: 300"}}, path: "timeouts.idle", msg: `has no unit; write it like 300s`},
		{name: "duration as list", edits: []edit{{"idle: 5m", "idle: [5m]"}}, path: "timeouts.idle", msg: "expected a duration"},
		{name: "unknown timeout", edits: []edit{{"idle: 5m", "idel: 5m"}}, path: "timeouts.idel", msg: `did you mean "idle"?`},

		// limits
		{name: "zero max_connections", edits: []edit{{"max_connections: 100", "max_connections: 0"}}, path: "limits.max_connections", msg: "must be positive"},
		{name: "huge max_connections", edits: []edit{{"max_connections: 100", "max_connections: 2000000"}}, path: "limits.max_connections", msg: "out of range 1..1000000"},
		{name: "max_header_bytes above 1 MiB", edits: []edit{{"max_header_bytes: 65536", "max_header_bytes: 2097152"}}, path: "limits.max_header_bytes", msg: "out of range 1024..1048576"},
		{name: "ldap_max_message above 16 MiB", edits: []edit{{"ldap_max_message: 65536", "ldap_max_message: 16777217"}}, path: "limits.ldap_max_message", msg: "out of range 1024..16777216"},
		{name: "sniff_bytes too small", edits: []edit{{"sniff_bytes: 8192", "sniff_bytes: 32"}}, path: "limits.sniff_bytes", msg: "out of range 64..65536"},
		{name: "sniff_bytes too large", edits: []edit{{"sniff_bytes: 8192", "sniff_bytes: 70000"}}, path: "limits.sniff_bytes", msg: "out of range 64..65536"},
		{name: "negative backend_idle_conns", edits: []edit{{"backend_idle_conns: 16", "backend_idle_conns: -1"}}, path: "limits.backend_idle_conns", msg: "out of range"},
		{name: "limit not a number", edits: []edit{{"max_connections: 100", "max_connections: many"}}, path: "limits.max_connections", msg: "expected a whole number, got a string (many)"},

		// tls
		{name: "min_version 1.1", edits: []edit{{`min_version: "1.2"`, `min_version: "1.1"`}}, path: "tls.min_version", msg: `"1.1" is not one of 1.2, 1.3`},
		{name: "min_version unquoted", edits: []edit{{`min_version: "1.2"`, `min_version: 1.3`}}},
		{name: "certificate without cert", edits: []edit{{"      cert: /etc/pbxgate/main.pem\n", ""}}, path: "tls.certificates[0].cert", at: "- name: main", msg: "required"},
		{name: "certificate without key", edits: []edit{{"      key: /etc/pbxgate/main.key\n", ""}}, path: "tls.certificates[0].key", at: "- name: main", msg: "required"},
		{name: "certificate name from file", edits: []edit{{"    - name: main\n      cert", "    - cert"}, {"certificate: main", "certificate: main # here"}}},
		{name: "certificate name not derivable", edits: []edit{{"    - name: main\n      cert: /etc/pbxgate/main.pem", "    - cert: \"/etc/pbxgate/my cert.pem\" # here"}, {"certificate: main", "certificate: \"my cert\""}}, path: "tls.certificates[0].name", at: "# here", msg: `"my cert" is not a valid name`, more: true},
		{name: "duplicate certificate name", edits: []edit{{"      hosts: [portal.example.com]\n", "      hosts: [portal.example.com]\n    - name: main # dup\n      cert: /b.pem\n      key: /b.key\n"}}, path: "tls.certificates[1].name", at: "# dup", msg: `"main" is already the name of tls.certificates[0]`},
		{name: "certificate host with port", edits: []edit{{"hosts: [portal.example.com]\nlisteners", "hosts: [\"portal.example.com:443\"]\nlisteners"}}, path: "tls.certificates[0].hosts[0]", at: "portal.example.com:443", msg: "hosts are names without port"},

		// listeners
		{name: "no listeners", yaml: "services: []\n", path: "listeners", line: -1, msg: "no listeners: at least one is required"},
		{name: "empty file", yaml: "", path: "", line: -1, msg: "empty configuration: no listeners"},
		{name: "comments only", yaml: "# nothing\n", path: "", line: -1, msg: "empty configuration"},
		{name: "listener without name", edits: []edit{{"  - name: web\n    address: \":80\"", "  - address: \":80\" # here"}}, path: "listeners[0].name", at: "# here", msg: "required"},
		{name: "listener bad name", edits: []edit{{"name: web", "name: \"web server\""}}, path: "listeners[0].name", msg: "not a valid name"},
		{name: "duplicate listener name", edits: []edit{{"name: raw", "name: web # dup"}}, path: "listeners[2].name", msg: `"web" is already the name of listeners[0]`},
		{name: "listener without address", edits: []edit{{"    address: \"127.0.0.1:1194\"\n", ""}}, path: "listeners[2].address", at: "- name: raw", msg: "required"},
		{name: "address without port", edits: []edit{{`address: ":80"`, `address: "80"`}}, path: "listeners[0].address", msg: "has no port"},
		{name: "address with host name", edits: []edit{{`address: ":80"`, `address: "localhost:80"`}}, path: "listeners[0].address", msg: `host "localhost" is not an IP address`},
		{name: "ipv6 without brackets", edits: []edit{{`address: "[::]:443"`, `address: "::1:443"`}}, path: "listeners[1].address", msg: "IPv6 addresses go in brackets"},
		{name: "named port", edits: []edit{{`address: ":80"`, `address: ":http"`}}, path: "listeners[0].address", msg: `port "http" is not a number`},
		{name: "port out of range", edits: []edit{{`address: ":80"`, `address: ":70000"`}}, path: "listeners[0].address", msg: "out of range 0..65535"},
		{name: "duplicate address", edits: []edit{{`address: "127.0.0.1:1194"`, `address: ":80" # dup`}}, path: "listeners[2].address", msg: `":80" is already the address of listeners[0]`},
		{name: "tls mode", edits: []edit{{"tls: required", "tls: maybe"}}, path: "listeners[1].tls", msg: "not one of none, required, optional"},
		{name: "unknown certificate", edits: []edit{{"certificate: main", "certificate: other"}}, path: "listeners[1].certificate", msg: `no certificate is named "other"`},
		{name: "empty protocols", edits: []edit{{"protocols: [http]", "protocols: []"}}, path: "listeners[0].protocols", msg: "at least one of http, ldap, sip, sip-ws, turn, tcp"},
		{name: "unknown protocol", edits: []edit{{"protocols: [http]", "protocols: [http, h323]"}}, path: "listeners[0].protocols[1]", msg: `"h323" is not one of http, ldap, sip, sip-ws, turn, tcp`},
		{name: "duplicate protocol", edits: []edit{{"protocols: [http]", "protocols: [http, http]"}}, path: "listeners[0].protocols[1]", msg: "listed twice"},
		{name: "tcp without tcp_service", edits: []edit{{"    tcp_service: vpn\n", ""}, {"protocols: [tcp]", "protocols: [tcp] # here"}}, path: "listeners[2].tcp_service", at: "- name: raw", msg: "required when protocols includes tcp"},
		{name: "tcp_service not tcp", edits: []edit{{"tcp_service: vpn", "tcp_service: portal"}}, path: "listeners[2].tcp_service", msg: `service "portal" is http, not tcp`, more: true},
		{name: "tcp_service unknown", edits: []edit{{"tcp_service: vpn", "tcp_service: nope"}}, path: "listeners[2].tcp_service", msg: `no service is named "nope"`},
		{name: "tcp_service without tcp", edits: []edit{{"protocols: [tcp]", "protocols: [http]"}}, path: "listeners[2].tcp_service", at: "tcp_service: vpn", msg: "protocols does not include tcp"},
		{name: "default_service unknown", edits: []edit{{"default_service: portal", "default_service: nope"}}, path: "listeners[0].default_service", msg: `no service is named "nope"`},
		{name: "default_service not http", edits: []edit{{"default_service: portal", "default_service: dir"}}, path: "listeners[0].default_service", msg: `service "dir" is ldap, not http`},
		{name: "default_service without http", edits: []edit{{"protocols: [http]\n    default_service", "protocols: [ldap]\n    default_service"}}, path: "listeners[0].default_service", at: "default_service: portal", msg: "protocols does not include http", more: true},
		{name: "trusted proxy not a network", edits: []edit{{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: [10.0.0.0/33]"}}, path: "listeners[0].trusted_proxies[0]", msg: "is not a network"},
		{name: "trusted proxy host bits", edits: []edit{{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: [10.0.0.1/8]"}}, path: "listeners[0].trusted_proxies[0]", msg: "did you mean 10.0.0.0/8?"},
		{name: "trusted proxy single IP", edits: []edit{{"trusted_proxies: [10.0.0.0/8]", "trusted_proxies: [10.0.0.1, \"2001:db8::1\"]"}}},
		{name: "listener max_connections zero", edits: []edit{{"tcp_service: vpn", "tcp_service: vpn\n    max_connections: 0"}}, path: "listeners[2].max_connections", at: "max_connections: 0", msg: "must be positive"},
		{name: "listener max_connections negative", edits: []edit{{"tcp_service: vpn", "tcp_service: vpn\n    max_connections: -3"}}, path: "listeners[2].max_connections", at: "max_connections: -3", msg: "out of range"},
		{name: "unknown listener key", edits: []edit{{`address: ":80"`, `adress: ":80"`}}, path: "listeners[0].adress", msg: `unknown key; did you mean "address"?`, more: true},

		// services
		{name: "service without name", edits: []edit{{"  - name: vpn\n    protocol: tcp", "  - protocol: tcp # here"}}, path: "services[2].name", at: "# here", msg: "required", more: true},
		{name: "duplicate service name", edits: []edit{{"name: vpn", "name: dir # dup"}}, path: "services[2].name", msg: `"dir" is already the name of services[1]`, more: true},
		{name: "service named refuse", edits: []edit{{"name: vpn", "name: refuse"}}, path: "services[2].name", msg: "reserved", more: true},
		{name: "service without protocol", edits: []edit{{"    protocol: tcp\n", ""}, {"  - name: vpn", "  - name: vpn # here"}}, path: "services[2].protocol", at: "# here", msg: "required; one of http, ldap, sip, tcp", more: true},
		{name: "unknown service protocol", edits: []edit{{"protocol: tcp", "protocol: h323"}}, path: "services[2].protocol", msg: `"h323" is not one of http, ldap, sip, tcp`, more: true},
		{name: "http service without hosts", edits: []edit{{"    hosts: [portal.example.com]\n    backend", "    backend"}, {"default_service: portal", "default_service: \"\""}, {"  - name: portal\n", "  - name: portal # here\n"}}, path: "services[0].hosts", at: "# here", msg: "at least one host"},
		{name: "default http service without hosts", edits: []edit{{"    hosts: [portal.example.com]\n    backend", "    backend"}}},
		{name: "ldap service without domains", edits: []edit{{"    domains: [example.com, EXAMPLE]\n", ""}, {"default_service: dir", "default_service: refuse"}, {"  - name: dir", "  - name: dir # here"}}, path: "services[1].domains", at: "# here", msg: "at least one domain"},
		{name: "ldap policy service without domains", edits: []edit{{"    domains: [example.com, EXAMPLE]\n", ""}}},
		{name: "hosts on ldap service", edits: []edit{{"domains: [example.com, EXAMPLE]", "domains: [example.com]\n    hosts: [dir.example.com]"}}, path: "services[1].hosts", at: "dir.example.com", msg: "hosts route http services only"},
		{name: "domains on http service", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [portal.example.com]\n    domains: [portal.example.com]\n    backend"}}, path: "services[0].domains", at: "domains: [portal", msg: "domains route ldap and sip services only"},
		{name: "paths on tcp service", edits: []edit{{"      address: 10.0.0.3:1194", "      address: 10.0.0.3:1194\n    paths: # here\n      deny: [/x]"}}, path: "services[2].paths", at: "# here", msg: "paths apply to http services only"},
		{name: "reject_statuses on ldap", edits: []edit{{"      ca: /etc/ca.pem", "      ca: /etc/ca.pem\n    reject_statuses: [401]"}}, path: "services[1].reject_statuses", at: "reject_statuses: [401]", msg: "http services only"},
		{name: "host routed twice", edits: []edit{{"      address: 10.0.0.3:1194", "      address: 10.0.0.3:1194\n  - name: other\n    protocol: http\n    hosts: [PORTAL.example.com]\n    backend: {address: \"10.0.0.9:80\"}"}}, path: "services[3].hosts[0]", at: "PORTAL.example.com", msg: `host "PORTAL.example.com" is already routed by services[0].hosts[0]`},
		{name: "host twice in one service", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [portal.example.com, portal.example.com]\n    backend"}}, path: "services[0].hosts[1]", at: "portal.example.com, portal", msg: "already routed by services[0].hosts[0]"},
		{name: "host star", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [\"*\"]\n    backend"}}, path: "services[0].hosts[0]", at: `hosts: ["*"]`, msg: "default_service"},
		{name: "host empty label", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [portal..example.com]\n    backend"}}, path: "services[0].hosts[0]", at: "portal..example", msg: "not a valid host name"},
		{name: "host double wildcard", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [\"*.*.example.com\"]\n    backend"}}, path: "services[0].hosts[0]", at: "*.*.example", msg: "wildcard is allowed only as the whole first label"},
		{name: "host ipv6 in brackets", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [\"[2001:db8::1]\"]\n    backend"}}, path: "services[0].hosts[0]", at: "2001:db8", msg: "without brackets"},
		{name: "host wildcard and ip", edits: []edit{{"hosts: [portal.example.com]\n    backend", "hosts: [\"*.portal.example.com\", 192.0.2.1, \"2001:db8::1\"]\n    backend"}}},
		{name: "domain claimed twice", edits: []edit{{"      address: 10.0.0.3:1194", "      address: 10.0.0.3:1194\n  - name: dir2\n    protocol: ldap\n    domains: [Example.COM]\n    backend: {address: \"10.0.0.8:389\"}"}}, path: "services[3].domains[0]", at: "Example.COM", msg: `domain "Example.COM" is already claimed by services[1].domains[0]`},
		{name: "netbios domain too long", edits: []edit{{"domains: [example.com, EXAMPLE]", "domains: [example.com, EXAMPLEEXAMPLEEXAMPLE]"}}, path: "services[1].domains[1]", msg: "at most 15 characters"},
		{name: "netbios domain with space", edits: []edit{{"domains: [example.com, EXAMPLE]", "domains: [example.com, \"EX AMPLE\"]"}}, path: "services[1].domains[1]", msg: "not a valid NetBIOS domain"},
		{name: "backend without address", edits: []edit{{"    backend:\n      address: 10.0.0.3:1194\n", "    backend: {} # here\n"}}, path: "services[2].backend.address", at: "# here", msg: "required"},
		{name: "backend without port", edits: []edit{{"address: 10.0.0.3:1194", "address: 10.0.0.3"}}, path: "services[2].backend.address", msg: "has no port"},
		{name: "backend port 0", edits: []edit{{"address: 10.0.0.3:1194", "address: 10.0.0.3:0"}}, path: "services[2].backend.address", msg: "port 0"},
		{name: "backend bad host", edits: []edit{{"address: 10.0.0.3:1194", "address: \"bad!host:1194\""}}, path: "services[2].backend.address", msg: "neither an IP address nor a DNS name"},
		{name: "backend ca without tls", edits: []edit{{"address: 10.0.0.3:1194", "address: 10.0.0.3:1194\n      ca: /etc/vpn-ca.pem"}}, path: "services[2].backend.ca", at: "vpn-ca.pem", msg: "only meaningful with tls: true"},
		{name: "backend server_name without tls", edits: []edit{{"address: 10.0.0.3:1194", "address: 10.0.0.3:1194\n      server_name: vpn.internal"}}, path: "services[2].backend.server_name", at: "server_name: vpn", msg: "only meaningful with tls: true"},
		{name: "backend insecure without tls", edits: []edit{{"address: 10.0.0.3:1194", "address: 10.0.0.3:1194\n      insecure_skip_verify: true"}}, path: "services[2].backend.insecure_skip_verify", at: "insecure_skip_verify", msg: "only meaningful with tls: true"},
		{name: "backend insecure with ca", edits: []edit{{"      ca: /etc/ca.pem", "      ca: /etc/ca.pem\n      insecure_skip_verify: true"}}, path: "services[1].backend.ca", at: "ca: /etc/ca.pem", msg: "no effect with insecure_skip_verify"},

		// path rules
		{name: "paths default", edits: []edit{{"    paths:\n", "    paths:\n      default: maybe\n"}}, path: "services[0].paths.default", at: "default: maybe", msg: "not one of allow, deny"},
		{name: "path without slash", edits: []edit{{"- /app/", "- app/"}}, path: "services[0].paths.allow[0].path", at: "- app/", msg: "must start with /"},
		{name: "exact without slash", edits: []edit{{`"= /login.php"`, `"= login.php"`}}, path: "services[0].paths.deny[0].path", msg: `must start with /`},
		{name: "exact without space", edits: []edit{{`"= /login.php"`, `"=/login.php"`}}},
		{name: "empty path", edits: []edit{{"path: /cdr/*.php", `path: ""`}}, path: "services[0].paths.allow[1].path", at: `path: ""`, msg: "required"},
		{name: "rule without path", edits: []edit{{"        - path: /cdr/*.php\n          methods", "        - methods"}}, path: "services[0].paths.allow[1].path", at: "- methods", msg: "required"},
		{name: "bad glob", edits: []edit{{"- /app/", "- /app/[a"}}, path: "services[0].paths.allow[0].path", at: "/app/[a", msg: "not a valid glob"},
		{name: "double star inside segment", edits: []edit{{"- /app/", "- /app/**.php"}}},
		{name: "literal percent", edits: []edit{{"- /app/", "- /100%25/"}}},
		{name: "bare percent", edits: []edit{{"- /app/", "- /100%/"}}, path: "services[0].paths.allow[0].path", at: "100%", msg: "a literal '%' is written %25"},
		{name: "percent at end", edits: []edit{{"- /app/", "- /app%2"}}, path: "services[0].paths.allow[0].path", at: "app%2", msg: "bare '%'"},
		{name: "double star segments", edits: []edit{{"- /app/", "- /app/**/*.php"}}},
		{name: "double slash", edits: []edit{{"- /app/", "- //app/"}}, path: "services[0].paths.allow[0].path", at: "//app", msg: "empty segment"},
		{name: "dot dot", edits: []edit{{"- /app/", "- /app/../etc/"}}, path: "services[0].paths.allow[0].path", at: "../etc", msg: `".." segment`},
		{name: "percent escape", edits: []edit{{"- /app/", "- /app%2Fx"}}, path: "services[0].paths.allow[0].path", at: "%2F", msg: "percent-escape"},
		{name: "backslash", edits: []edit{{"- /app/", `- '/app\x'`}}, path: "services[0].paths.allow[0].path", at: `/app\x`, msg: "backslash"},
		{name: "control byte", edits: []edit{{"- /app/", `- "/app\x01"`}}, path: "services[0].paths.allow[0].path", at: `/app\x01`, msg: "control character"},
		{name: "query in exact", edits: []edit{{`"= /login.php"`, `"= /login.php?x=1"`}}, path: "services[0].paths.deny[0].path", msg: "query string"},
		{name: "lower-case method", edits: []edit{{"methods: [POST]", "methods: [post]"}}, path: "services[0].paths.allow[1].methods[0]", msg: `methods are case-sensitive; write "POST"`},
		{name: "method not a token", edits: []edit{{"methods: [POST]", "methods: [\"PO ST\"]"}}, path: "services[0].paths.allow[1].methods[0]", msg: "not an HTTP method"},
		{name: "duplicate method", edits: []edit{{"methods: [POST]", "methods: [POST, GET, POST]"}}, path: "services[0].paths.allow[1].methods[2]", msg: `"POST" is listed twice`},
		{name: "bad rule network", edits: []edit{{"networks: [10.20.0.0/24, 10.9.9.9]", "networks: [10.20.0.0/24, 10.9.9]"}}, path: "services[0].paths.allow[1].networks[1]", msg: `"10.9.9" is not a network`},
		{name: "rule as list", edits: []edit{{"- /app/", "- [/app/]"}}, path: "services[0].paths.allow[0]", at: "[/app/]", msg: "a path rule is a path string or a mapping"},
		{name: "unknown rule key", edits: []edit{{"methods: [POST]", "method: [POST]"}}, path: "services[0].paths.allow[1].method", msg: `did you mean "methods"?`},
		{name: "reject status 600", edits: []edit{{"reject_statuses: [401, 403]", "reject_statuses: [401, 600]"}}, path: "services[0].reject_statuses[1]", msg: "600 is not an HTTP status"},
		{name: "reject status 99", edits: []edit{{"reject_statuses: [401, 403]", "reject_statuses: [99]"}}, path: "services[0].reject_statuses[0]", msg: "99 is not an HTTP status"},

		// ldap policy
		{name: "ldap policy unknown service", edits: []edit{{"anonymous: refuse", "anonymous: nobody"}}, path: "ldap.anonymous", msg: `"nobody" is neither "refuse" nor the name of a service`},
		{name: "ldap policy http service", edits: []edit{{"anonymous: refuse", "anonymous: refuse\n  sasl: portal"}}, path: "ldap.sasl", at: "sasl: portal", msg: `service "portal" is http, not ldap`},
		{name: "ldap policy to service", edits: []edit{{"anonymous: refuse", "starttls: dir"}}},

		// document level
		{name: "unknown top-level key", edits: []edit{{"ldap:\n", "listener: []\nldap:\n"}}, path: "listener", at: "listener: []", msg: `did you mean "listeners"?`},
		{name: "unknown key without suggestion", edits: []edit{{"ldap:\n", "frobnicate: 1\nldap:\n"}}, path: "frobnicate", at: "frobnicate", msg: "known keys here: admin, data_dir, firewall, fraud, ldap"},
		{name: "duplicate key", edits: []edit{{"  format: text\n", "  format: text\n  format: json\n"}}, path: "log.format", at: "format: json", msg: `mapping key "format" already defined`},
		{name: "syntax error", yaml: "log:\n  format: [text\nx: 1\n", path: "", line: 3, msg: "mapping values are not allowed"},
		{name: "two documents", yaml: baseYAML + "---\nlisteners: []\n", path: "", at: "---", msg: "more than one YAML document"},
		{name: "root is a list", yaml: "- a\n- b\n", path: "", line: 1, msg: "must be a mapping"},
		{name: "section is a list", edits: []edit{{"log:\n  level: info\n  format: text\n", "log: [info]\n"}}, path: "log", at: "log: [info]", msg: "expected a mapping, got a list"},
		{name: "name is a mapping", edits: []edit{{"name: web", "name: {a: 1}"}}, path: "listeners[0].name", msg: "expected a single value, got a mapping"},
		{name: "bool is a string", edits: []edit{{"tls: true", "tls: sure"}}, path: "services[1].backend.tls", msg: "expected true or false"},
		// fraud, admin, store
		{name: "zero weight is allowed", edits: []edit{{"rejected_by_service: 1", "rejected_by_service: 0"}}},
		{name: "threshold negative", edits: []edit{{"suspicious_per_minute: 10", "suspicious_per_minute: -1"}}, path: "fraud.suspicious_per_minute", msg: "-1 is out of range 1..1000000"},
		{name: "threshold zero", edits: []edit{{"suspicious_per_minute: 10", "suspicious_per_minute: 0"}}, path: "fraud.suspicious_per_minute", msg: "must be positive", more: true},
		{name: "max shorter than first ban", edits: []edit{{"blacklist_max: 24h", "blacklist_max: 10m"}}, path: "fraud.blacklist_max", msg: "10m is shorter than fraud.blacklist_for (30m)"},
		{name: "recidive window in days", edits: []edit{{"recidive_window: 7d", "recidive_window: 1d12h"}}},
		{name: "refused connections closed at once", edits: []edit{{"recidive_window: 7d", "recidive_window: 7d\n  refused_hold: 0s"}}},
		{name: "refused hold too long", edits: []edit{{"recidive_window: 7d", "recidive_window: 7d\n  refused_hold: 6m"}}, path: "fraud.refused_hold", at: "refused_hold:", msg: "6m is out of range 0s..5m"},
		{name: "negative weight", edits: []edit{{"rejected_by_service: 1", "rejected_by_service: -1"}}, path: "fraud.weights.rejected_by_service", msg: "-1 is out of range 0..1000"},
		{name: "unknown reason", edits: []edit{{"{denied_path: 2}", "{denied_pth: 2}"}}, path: "fraud.weights.reasons.denied_pth", at: "reasons:", msg: `unknown event reason "denied_pth"; did you mean denied_path?`},
		{name: "reason weight too big", edits: []edit{{"{denied_path: 2}", "{denied_path: 2000}"}}, path: "fraud.weights.reasons.denied_path", at: "reasons:", msg: "2000 is out of range 0..1000"},
		{name: "whitelist host bits", edits: []edit{{"[198.51.100.0/24, 2001:db8::/32]", "[198.51.100.1/24]"}}, path: "fraud.whitelist[0]", msg: "did you mean 198.51.100.0/24?"},
		{name: "whitelist garbage", edits: []edit{{"[198.51.100.0/24, 2001:db8::/32]", "[office]"}}, path: "fraud.whitelist[0]", msg: `"office" is not a network`},
		{name: "admin on a listener's port", edits: []edit{{"address: 127.0.0.1:9190", "address: 127.0.0.1:1194"}}, path: "admin.address", msg: "is also listener raw's address"},
		{name: "admin on a wildcard listener's port", edits: []edit{{"address: 127.0.0.1:9190", "address: 127.0.0.1:80"}}, path: "admin.address", msg: "is also listener web's address"},
		{name: "admin address garbage", edits: []edit{{"address: 127.0.0.1:9190", "address: nowhere"}}, path: "admin.address", msg: `(or "off")`},
		{name: "admin all off", edits: []edit{{"address: 127.0.0.1:9190", "address: \"off\""}, {"socket: /run/pbxgate/admin.sock", "socket: \"off\""}}, path: "admin", at: "admin:", msg: "both off"},
		{name: "admin socket too long", edits: []edit{{"socket: /run/pbxgate/admin.sock", "socket: /" + strings.Repeat("s", 120)}}, path: "admin.socket", msg: "has room for 107"},
		{name: "store backend", edits: []edit{{"backend: bolt", "backend: redis"}}, path: "store.backend", msg: `"redis" is not one of bolt`},
		{name: "anchors and merge keys", edits: []edit{{"  - name: vpn\n    protocol: tcp\n", "  - <<: &tcpdefaults\n      protocol: tcp\n    name: vpn\n"}, {"address: 10.0.0.1:80", "address: &a 10.0.0.1:80"}, {"address: 10.0.0.3:1194", "address: *a"}}},
		{name: "merge key typo", edits: []edit{{"  - name: vpn\n    protocol: tcp\n", "  - <<: {name: vpn, protocl: tcp}\n"}}, path: "services[2].protocl", at: "protocl", msg: `did you mean "protocol"?`, more: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.yaml
			if tc.yaml == "" && tc.edits != nil {
				in = apply(t, tc.edits...)
			}
			c, err := Parse([]byte(in), "test.yaml")
			if tc.path == "" && tc.msg == "" {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				if w := c.Warnings(); len(w) != 0 {
					t.Fatalf("unexpected warnings: %q", w)
				}
				return
			}
			if err == nil {
				t.Fatalf("want a problem at %s, got a valid config", tc.path)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not match ErrInvalid: %v", err)
			}
			if c != nil {
				t.Errorf("Parse returned a Config with an error")
			}
			want := tc.line
			switch {
			case want == -1:
				want = 0
			case want == 0 && tc.at != "":
				want = lineOf(t, in, tc.at)
			case want == 0:
				e := tc.edits[len(tc.edits)-1]
				want = lineOf(t, in, strings.TrimLeft(strings.SplitN(e.new, "\n", 2)[0], " -"))
			}
			probs := Problems(err)
			var found *Problem
			for _, p := range probs {
				if p.Path == tc.path && p.Line == want && strings.Contains(p.Message, tc.msg) {
					found = p
				}
			}
			if found == nil {
				t.Fatalf("want problem at line %d, %s: ...%s...; got:\n%v", want, tc.path, tc.msg, err)
			}
			prefix := "test.yaml: "
			if want > 0 {
				prefix = fmt.Sprintf("test.yaml:%d: ", want)
			}
			if tc.path != "" {
				prefix += tc.path + ": "
			}
			if !strings.HasPrefix(found.Error(), prefix) || !strings.Contains(err.Error(), found.Error()) {
				t.Errorf("message %q does not start with %q", found.Error(), prefix)
			}
			if !tc.more && len(probs) != 1 {
				t.Errorf("want exactly one problem, got %d:\n%v", len(probs), err)
			}
		})
	}
}

func TestProblemsSortedByLine(t *testing.T) {
	in := apply(t,
		edit{"level: info", "level: loud"},
		edit{"protocol: tcp", "protocol: sip"},
		edit{`address: ":80"`, `address: "80"`},
	)
	_, err := Parse([]byte(in), "test.yaml")
	probs := Problems(err)
	if len(probs) < 3 {
		t.Fatalf("want at least 3 problems, got %v", err)
	}
	for i := 1; i < len(probs); i++ {
		if probs[i].Line < probs[i-1].Line {
			t.Fatalf("problems not sorted by line:\n%v", err)
		}
	}
	if probs[0].Path != "log.level" {
		t.Errorf("first problem is %s, want log.level", probs[0].Path)
	}
}

// A Config built in code has no lines: messages say just the field.
func TestValidateWithoutPositions(t *testing.T) {
	c := &Config{}
	c.ApplyDefaults()
	err := c.Validate()
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("want ErrInvalid, got %v", err)
	}
	if got, want := err.Error(), "listeners: no listeners: at least one is required"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	c.Listeners = []Listener{{Name: "web", Address: ":80"}}
	c.Services = []Service{{Name: "app", Protocol: ProtoHTTP, Hosts: []string{"a.example"}, Backend: Backend{Address: "127.0.0.1:8080"}}}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config built in code: %v", err)
	}
	c.Services[0].Backend.Address = "nowhere"
	c.File = "built.yaml"
	err = c.Validate()
	if got, want := err.Error(), `built.yaml: services[0].backend.address: "nowhere" has no port; write host:port, e.g. :443 or 10.0.0.5:8080`; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestProblemError(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "f.yaml", Line: 3, Path: "a.b", Message: "bad"}, "f.yaml:3: a.b: bad"},
		{Problem{File: "f.yaml", Path: "a.b", Message: "bad"}, "f.yaml: a.b: bad"},
		{Problem{Line: 3, Path: "a.b", Message: "bad"}, "line 3: a.b: bad"},
		{Problem{Line: 3, Message: "bad"}, "line 3: bad"},
		{Problem{Message: "bad"}, "bad"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "10.20.0.0/24", want: "10.20.0.0/24"},
		{in: "10.9.9.9", want: "10.9.9.9/32"},
		{in: "2001:db8::/32", want: "2001:db8::/32"},
		{in: "2001:db8::1", want: "2001:db8::1/128"},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
		{in: "10.20.0.1/24", err: "did you mean 10.20.0.0/24?"},
		{in: "10.20.0.0/40", err: "not a network"},
		{in: "fe80::1%eth0", err: "zones are not allowed"},
		{in: "example.com", err: "not a network"},
		{in: "", err: "empty"},
		{in: " 10.9.9.9 ", want: "10.9.9.9/32"},
		{in: "::ffff:192.0.2.1", want: "192.0.2.1/32"},
		{in: "::ffff:192.0.2.0/120", want: "192.0.2.0/24"},
	} {
		p, err := ParseNetwork(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseNetwork(%q) error = %v, want %q", tc.in, err, tc.err)
		case tc.err == "" && (err != nil || p.String() != tc.want):
			t.Errorf("ParseNetwork(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		}
	}
}

func TestProblemsCapped(t *testing.T) {
	var b strings.Builder
	b.WriteString("listeners:\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "  - name: l%d\n    address: bad\n", i)
	}
	_, err := Parse([]byte(b.String()), "big.yaml")
	probs := Problems(err)
	if len(probs) != maxProblems {
		t.Fatalf("got %d problems, want %d", len(probs), maxProblems)
	}
	if last := probs[len(probs)-1]; last.Message != "801 more problems not shown" {
		t.Errorf("last problem = %q", last.Error())
	}
	if probs[0].Line != 3 || probs[0].Path != "listeners[0].address" {
		t.Errorf("first problem = %q", probs[0].Error())
	}
}
