package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pbxgate/pbxgate/internal/sip"
)

// sameConfig compares Configs ignoring where things were written.
var sameConfig = cmp.Options{
	cmpopts.IgnoreUnexported(Config{}),
	cmpopts.IgnoreFields(PathRule{}, "Line"),
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pbxgate.yaml")
	if err := os.WriteFile(p, []byte(baseYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.File != p {
		t.Errorf("File = %q, want %q", c.File, p)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist and not ErrInvalid", err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(baseYAML, "level: info", "level: loud", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), bad+":3: log.level: ") {
		t.Errorf("invalid file: got %v", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	p := filepath.Join(t.TempDir(), "big.yaml")
	big := baseYAML + "#" + strings.Repeat("x", MaxFileSize) + "\n"
	if err := os.WriteFile(p, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v, want a size error", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`
tls:
  certificates:
    - cert: /etc/pbxgate/certs/site.example.com.pem
      key: /etc/pbxgate/certs/site.example.com.key
listeners:
  - name: web
    address: ":80"
  - name: secure
    address: ":443"
    tls: required
    max_connections: 7
services:
  - name: app
    protocol: http
    hosts: [app.example.com]
    backend: {address: "app.internal:8443", tls: true}
    paths:
      allow: [/public/]
  - name: open
    protocol: http
    hosts: [open.example.com]
    backend: {address: "10.0.0.2:80"}
    reject_statuses: []
  - name: dir
    protocol: ldap
    domains: [example.com]
    backend: {address: "10.0.0.3:389"}
  - name: pbx
    protocol: sip
    domains: [pbx.example.com]
    backend: {address: "10.0.0.4:5060"}
`), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	yes, one, zero := true, 1, 0
	perUser, perSource, total, kbps := 50, 200, 20000, 10000
	hold := Duration(10 * time.Second)
	want := &Config{
		DataDir:  "/var/lib/pbxgate",
		Log:      Log{Level: "info", Format: "text", Access: &yes},
		Timeouts: Timeouts{FirstBytes: Duration(5 * time.Second), TLSHandshake: Duration(10 * time.Second), Idle: Duration(5 * time.Minute), BackendConnect: Duration(5 * time.Second), BackendResponse: Duration(60 * time.Second), HTTPReadHeader: Duration(10 * time.Second), HTTPIdle: Duration(2 * time.Minute), Shutdown: Duration(30 * time.Second)},
		Limits:   Limits{MaxConnections: 10000, MaxHeaderBytes: 65536, LDAPMaxMessage: 65536, BackendIdleConns: 256, SniffBytes: 8192},
		TLS: TLS{MinVersion: "1.2", Certificates: []Certificate{{
			Name: "site.example.com", Cert: "/etc/pbxgate/certs/site.example.com.pem", Key: "/etc/pbxgate/certs/site.example.com.key"}}},
		Listeners: []Listener{
			{Name: "web", Address: ":80", Transport: "tcp", TLS: "none", Protocols: []string{"http"}, MaxConnections: 10000},
			{Name: "secure", Address: ":443", Transport: "tcp", TLS: "required", Certificate: "site.example.com", Protocols: []string{"http"}, MaxConnections: 7},
		},
		Services: []Service{
			{Name: "app", Protocol: "http", Hosts: []string{"app.example.com"},
				Backend: Backend{Address: "app.internal:8443", TLS: true, ServerName: "app.internal"},
				Paths:   PathRules{Default: "deny", Allow: []PathRule{{Path: "/public/"}}}, RejectStatuses: []int{401, 403}},
			{Name: "open", Protocol: "http", Hosts: []string{"open.example.com"},
				Backend: Backend{Address: "10.0.0.2:80"}, Paths: PathRules{Default: "allow"}, RejectStatuses: []int{}},
			{Name: "dir", Protocol: "ldap", Domains: []string{"example.com"}, Backend: Backend{Address: "10.0.0.3:389"}},
			{Name: "pbx", Protocol: "sip", Domains: []string{"pbx.example.com"}, Backend: Backend{Address: "10.0.0.4:5060", UDPAddress: "10.0.0.4:5060"}},
		},
		LDAP: LDAPPolicy{Anonymous: "refuse", SASL: "refuse", StartTLS: "refuse", DefaultService: "refuse"},
		Fraud: Fraud{Enabled: &yes, SuspiciousPerMinute: 10, BlacklistFor: Duration(30 * time.Minute),
			BlacklistMax: Duration(24 * time.Hour), RecidiveWindow: Duration(7 * 24 * time.Hour),
			Weights:    Weights{RejectedByGateway: &one, RejectedByService: &one, BackendUnreachable: &zero, Reasons: map[string]int{"auth_challenge": 0, "scanner": 10, "call_limit": 0}},
			MaxSources: 1000000, NAT: NAT{SuccessWindow: Duration(time.Hour), MaxFactor: 100}, RecentEvents: 10000, SuspectRate: 200, UnprovenConcurrency: 16, RefusedHold: &hold},
		Admin: Admin{Address: "127.0.0.1:9190", Socket: "/var/lib/pbxgate/admin.sock"},
		Store: Store{Backend: "bolt", Path: "/var/lib/pbxgate/state.db"},
		SIP: SIP{Flood: SIPFlood{Window: Duration(2 * time.Second), Limit: 100, BlockFor: Duration(5 * time.Minute), MaxSources: 1000000},
			ScannerUserAgents: sip.DefaultScannerAgents, MaxMessage: 65535, IdleTimeout: Duration(time.Hour),
			UDP:   SIPUDP{MaxFlows: 100000},
			Calls: SIPCalls{MaxDuration: Duration(3 * time.Hour), MaxTracked: 100000}},
		TURN: TURN{RelayPorts: PortRange{Min: 49152, Max: 65535},
			Quotas:      TURNQuotas{PerUser: &perUser, PerSource: &perSource, Total: &total, MaxLifetime: Duration(12 * time.Hour), MaxKbps: &kbps},
			IdleTimeout: Duration(10 * time.Minute)},
		Firewall: Firewall{OpenListeners: &yes, StateDir: "/var/lib/pbxgate/firewall", TestDuration: Duration(10 * time.Minute),
			KernelBlacklist: KernelBlacklist{Resync: Duration(time.Minute)}},
		File: "d.yaml",
	}
	if d := cmp.Diff(want, c, sameConfig); d != "" {
		t.Errorf("effective config (-want +got):\n%s", d)
	}

	// Defaults() holds the same top-level defaults.
	d := Defaults()
	if d.DataDir != want.DataDir || d.Timeouts != want.Timeouts || d.Limits != want.Limits || d.LDAP != want.LDAP || d.TLS.MinVersion != "1.2" || !*d.Log.Access {
		t.Errorf("Defaults() = %+v", d)
	}

	// Applying the defaults again changes nothing.
	again := *c
	again.ApplyDefaults()
	if d := cmp.Diff(c, &again, sameConfig); d != "" {
		t.Errorf("ApplyDefaults is not idempotent:\n%s", d)
	}
}

func TestRejectStatusesEmptyMeansNone(t *testing.T) {
	in := strings.Replace(baseYAML, "reject_statuses: [401, 403]", "reject_statuses: []", 1)
	c, err := Parse([]byte(in), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rs := c.Services[0].RejectStatuses; rs == nil || len(rs) != 0 {
		t.Fatalf("explicit [] became %#v, want empty non-nil", rs)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "reject_statuses: []") {
		t.Fatalf("effective config lost reject_statuses: []:\n%s", out)
	}
	c2, err := Parse(out, "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rs := c2.Services[0].RejectStatuses; rs == nil || len(rs) != 0 {
		t.Fatalf("re-parsed [] became %#v", rs)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in, out, err string
	}{
		{in: "5s", out: "5s"},
		{in: "90s", out: "1m30s"},
		{in: "1h30m", out: "1h30m"},
		{in: "2h", out: "2h"},
		{in: "120m", out: "2h"},
		{in: "1.5s", out: "1.5s"},
		{in: "250ms", out: "250ms"},
		{in: "1h0m0.5s", out: "1h0m0.5s"},
		{in: " 10s ", out: "10s"},
		{in: "0s", out: "0s"},
		{in: "7d", out: "168h"},
		{in: "1d12h", out: "36h"},
		{in: "d", err: `invalid duration "d"`},
		{in: "1dd", err: `invalid duration "1dd"`},
		{in: "7days", err: `invalid duration "7days"`},
		{in: "1.5d", out: "36h"},
		{in: "-5m", err: `invalid duration "-5m"`},
		{in: "5y", err: `invalid duration "5y"`},
		{in: "200000d", err: "too large"},
		{in: "106751d106751d", err: "too large"},
		{in: "5", err: `duration "5" has no unit; write it like 5s`},
		{in: "5 s", err: `invalid duration "5 s"`},
		{in: "", err: "empty duration"},
		{in: "forever", err: `invalid duration "forever"`},
	} {
		d, err := ParseDuration(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseDuration(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.String() != tc.out {
			t.Errorf("ParseDuration(%q) = %v, %v; want %s", tc.in, d, err, tc.out)
			continue
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%q does not parse back: %v, %v", d.String(), back, err)
		}
		if got, _ := d.MarshalYAML(); got != tc.out {
			t.Errorf("MarshalYAML(%v) = %v", d, got)
		}
	}
	if got := Duration(3 * time.Second).D(); got != 3*time.Second {
		t.Errorf("D() = %v", got)
	}
}

func TestPathRuleForms(t *testing.T) {
	c, err := Parse([]byte(baseYAML), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := c.Services[0].Paths
	wantDeny := PathRule{Path: "= /login.php", Line: lineOf(t, baseYAML, `"= /login.php"`)}
	wantAllow := []PathRule{
		{Path: "/app/", Line: lineOf(t, baseYAML, "- /app/")},
		{Path: "/cdr/*.php", Methods: []string{"POST"}, Networks: []string{"10.20.0.0/24", "10.9.9.9"}, Line: lineOf(t, baseYAML, "path: /cdr/*.php")},
	}
	if d := cmp.Diff([]PathRule{wantDeny}, p.Deny); d != "" {
		t.Errorf("deny (-want +got):\n%s", d)
	}
	if d := cmp.Diff(wantAllow, p.Allow); d != "" {
		t.Errorf("allow (-want +got):\n%s", d)
	}
	if p.Default != Deny {
		t.Errorf("default = %q, want deny (allow has rules)", p.Default)
	}

	for _, tc := range []struct {
		path string
		kind PathKind
		pat  string
	}{
		{"= /login.php", PathExact, "/login.php"},
		{"=/login.php", PathExact, "/login.php"},
		{"= /a*b", PathExact, "/a*b"},
		{"/app/provision/", PathPrefix, "/app/provision/"},
		{"/", PathPrefix, "/"},
		{"/cdr/*.php", PathGlob, "/cdr/*.php"},
		{"/**/x", PathGlob, "/**/x"},
		{"/a?", PathGlob, "/a?"},
		{"/[ab]", PathGlob, "/[ab]"},
	} {
		kind, pat := PathRule{Path: tc.path}.Pattern()
		if kind != tc.kind || pat != tc.pat {
			t.Errorf("Pattern(%q) = %v %q, want %v %q", tc.path, kind, pat, tc.kind, tc.pat)
		}
	}
	if PathExact.String() != "exact" || PathPrefix.String() != "prefix" || PathGlob.String() != "glob" || PathKind(0).String() != "invalid" {
		t.Error("PathKind.String")
	}
}

func TestLookups(t *testing.T) {
	c, err := Parse([]byte(baseYAML), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := c.Service("dir"); !ok || s.Protocol != ProtoLDAP || s != &c.Services[1] {
		t.Errorf("Service(dir) = %v, %v", s, ok)
	}
	if _, ok := c.Service("nope"); ok {
		t.Error("Service(nope) found")
	}
	if l, ok := c.Listener("secure"); !ok || !l.Carries(ProtoLDAP) || l.Carries(ProtoTCP) {
		t.Errorf("Listener(secure) = %v, %v", l, ok)
	}
	if _, ok := c.Listener("nope"); ok {
		t.Error("Listener(nope) found")
	}
	if cert, ok := c.Certificate("main"); !ok || cert.Key != "/etc/pbxgate/main.key" {
		t.Errorf("Certificate(main) = %v, %v", cert, ok)
	}
	if _, ok := c.Certificate("nope"); ok {
		t.Error("Certificate(nope) found")
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := Parse([]byte(baseYAML), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"first_bytes: 5s", "backend_response: 1m\n", "- = /login.php", "path: /cdr/*.php", "default: deny"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), `: ""`) || strings.Contains(string(out), "hosts: []") {
		t.Errorf("effective config prints empty values:\n%s", out)
	}
	c2, err := Parse(out, "t.yaml")
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, out)
	}
	if d := cmp.Diff(c, c2, sameConfig); d != "" {
		t.Errorf("round trip (-first +second):\n%s", d)
	}
}

func TestProblemsOfOtherErrors(t *testing.T) {
	if Problems(nil) != nil || Problems(errors.New("x")) != nil {
		t.Error("Problems of a non-config error is not nil")
	}
	_, err := Parse([]byte("log: {level: x, format: y}\n"), "t.yaml")
	wrapped := errors.Join(errors.New("context"), err)
	if n := len(Problems(wrapped)); n != 3 {
		t.Errorf("got %d problems through wrapping, want 3 (level, format, no listeners): %v", n, wrapped)
	}
}
