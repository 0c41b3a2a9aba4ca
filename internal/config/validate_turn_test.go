package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const turnBase = `
listeners:
  - {name: turn-udp, address: ":3478", transport: udp, protocols: [turn]}
  - {name: turn-tcp, address: ":3478", protocols: [turn]}
turn:
  realm: example.com
  public_addresses: [203.0.113.10]
  rest_secrets: ["0123456789abcdef"]
`

func TestValidateTURN(t *testing.T) {
	checkEdits(t, turnBase, []editCase{
		{name: "base", from: "", to: ""},
		{name: "ipv4 and ipv6", from: "[203.0.113.10]", to: "[203.0.113.10, \"2001:db8::10\"]"},
		{name: "no realm", from: "  realm: example.com\n", to: "", path: "turn.realm", msg: "required: listeners[0] carries turn"},
		{name: "no public address", from: "  public_addresses: [203.0.113.10]\n", to: "", path: "turn.public_addresses", msg: "required"},
		{name: "unspecified public address", from: "[203.0.113.10]", to: "[0.0.0.0]", path: "turn.public_addresses[0]", msg: "unspecified"},
		{name: "two IPv4 public addresses", from: "[203.0.113.10]", to: "[203.0.113.10, 203.0.113.11]", path: "turn.public_addresses[1]", msg: "at most one IPv4 and one IPv6"},
		{name: "relay address of a family without public", from: "  rest_secrets", to: "  relay_addresses: [\"::1\"]\n  rest_secrets", path: "turn.relay_addresses[0]", msg: "no IPv6 address"},
		{name: "no credentials", from: "  rest_secrets: [\"0123456789abcdef\"]\n", to: "", path: "turn", msg: "no client could authenticate"},
		{name: "short secret", from: "0123456789abcdef", to: "short", path: "turn.rest_secrets[0]", msg: "need at least 16"},
		{name: "bad user key", from: "  rest_secrets", to: "  users: [{name: alice, key: nothex}]\n  rest_secrets", path: "turn.users[0].key", msg: "32 hex digits"},
		{name: "user with colon", from: "  rest_secrets", to: "  users: [{name: \"1:alice\", key: 00112233445566778899aabbccddeeff}]\n  rest_secrets", path: "turn.users[0].name", msg: "without ':'"},
		{name: "port range", from: "  rest_secrets", to: "  relay_ports: {min: 60000, max: 50000}\n  rest_secrets", path: "turn.relay_ports", msg: "above max"},
		{name: "low port", from: "  rest_secrets", to: "  relay_ports: {min: 80}\n  rest_secrets", path: "turn.relay_ports.min", msg: "out of range"},
		{name: "kbps too low", from: "  rest_secrets", to: "  quotas: {max_kbps: 10}\n  rest_secrets", path: "turn.quotas.max_kbps", msg: "out of range"},
		{name: "kbps off", from: "  rest_secrets", to: "  quotas: {max_kbps: 0, per_user: 0}\n  rest_secrets"},
		{name: "bad peer network", from: "  rest_secrets", to: "  allow_peers: [10.0.0.1/8]\n  rest_secrets", path: "turn.allow_peers[0]", msg: "host bits"},
		{name: "udp listener with two protocols", from: "protocols: [turn]}\n  - {name: turn-tcp", to: "protocols: [turn, sip]}\n  - {name: turn-tcp", path: "listeners[0].protocols", msg: "either sip or turn"},
	}, func(t *testing.T, c *Config) {
		if !c.ServesTURN() {
			t.Error("ServesTURN false")
		}
	})
}

func TestTURNSection(t *testing.T) {
	// Without a turn listener the section is neither required nor checked,
	// and the audit says it is unused.
	c, err := Parse([]byte("listeners: [{name: web, address: \":80\"}]\nturn: {realm: x, public_addresses: [bogus]}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "no listener carries turn") {
		t.Errorf("warnings %q", w)
	}
	c, err = Parse([]byte(strings.Replace(turnBase, "  rest_secrets", "  allow_peers: [0.0.0.0/0]\n  rest_secrets", 1)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "turn.allow_peers[0]") || strings.Contains(w, "no services") {
		t.Errorf("warnings %q", w)
	}

	dir := t.TempDir()
	f := filepath.Join(dir, "secrets")
	if err := os.WriteFile(f, []byte("# rotated 2026-11\nfedcba9876543210fedcba\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.TURN.RESTSecretsFile = f
	got, err := c.TURN.TURNSecrets()
	if err != nil || len(got) != 2 || string(got[0]) != "0123456789abcdef" || string(got[1]) != "fedcba9876543210fedcba" {
		t.Errorf("TURNSecrets = %q, %v", got, err)
	}
	if err := os.WriteFile(f, []byte("0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TURN.TURNSecrets(); err == nil || !strings.Contains(err.Error(), "repeats secret 0") {
		t.Errorf("duplicate secret in file: %v", err)
	}
	c.TURN.RESTSecretsFile = filepath.Join(dir, "missing")
	if _, err := c.TURN.TURNSecrets(); err == nil || !strings.Contains(err.Error(), "turn.rest_secrets_file") {
		t.Errorf("missing file: %v", err)
	}
}
