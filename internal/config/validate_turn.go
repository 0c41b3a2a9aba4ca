package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Bounds of the turn section.
const (
	minTURNPort        = 1024
	minTURNSecretLen   = 16 // bytes, as turnauth requires
	maxTURNUserLen     = 128
	maxTURNRealmLen    = 128
	minTURNMaxLifetime = Duration(time.Minute)
	minTURNIdle        = Duration(30 * time.Second)
	minTURNKbps        = 100 // below one G.711 call (about 87 kbit/s with headers)
	maxTURNKbps        = 10_000_000
	maxTURNQuota       = 10_000_000
)

// turnListeners returns the paths of the listeners carrying turn.
func (c *Config) turnListeners() []string {
	var out []string
	for i, l := range c.Listeners {
		for _, p := range l.Protocols {
			if p == ProtoTURN {
				out = append(out, indexPath("listeners", i))
			}
		}
	}
	return out
}

// ServesTURN reports whether a listener carries turn.
func (c *Config) ServesTURN() bool { return len(c.turnListeners()) > 0 }

// turn checks the turn section. Its required keys are required only when a
// listener carries turn.
func (k *checker) turn() {
	t := &k.c.TURN
	users := k.c.turnListeners()
	if len(users) == 0 {
		return
	}
	why := fmt.Sprintf("required: %s carries turn", users[0])
	switch {
	case t.Realm == "":
		k.add("turn.realm", "%s (the credential realm, usually your domain)", why)
	case len(t.Realm) > maxTURNRealmLen || !printable(t.Realm) || strings.ContainsAny(t.Realm, `"\`):
		k.add("turn.realm", "%q: need 1..%d printable characters without quotes or backslashes", clip(t.Realm, 64), maxTURNRealmLen)
	}
	public := map[bool]string{} // is4 → address
	if len(t.PublicAddresses) == 0 {
		k.add("turn.public_addresses", "%s (the relay address clients are told: this host's public IP)", why)
	}
	for i, s := range t.PublicAddresses {
		p := indexPath("turn.public_addresses", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || a.Zone() != "":
			k.add(p, "%q is not an IP address", clip(s, 64))
		case a.Unmap().IsUnspecified():
			k.add(p, "%s is the unspecified address; write the address clients reach", s)
		case public[a.Unmap().Is4()] != "":
			k.add(p, "a second %s address (%s already): at most one IPv4 and one IPv6", family(a), public[a.Unmap().Is4()])
		default:
			public[a.Unmap().Is4()] = s
		}
	}
	relay := map[bool]bool{}
	for i, s := range t.RelayAddresses {
		p := indexPath("turn.relay_addresses", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || a.Zone() != "":
			k.add(p, "%q is not an IP address", clip(s, 64))
		case public[a.Unmap().Is4()] == "":
			k.add(p, "%s: turn.public_addresses has no %s address", s, family(a))
		case relay[a.Unmap().Is4()]:
			k.add(p, "a second %s address: at most one per family", family(a))
		default:
			relay[a.Unmap().Is4()] = true
		}
	}
	k.between("turn.relay_ports.min", t.RelayPorts.Min, minTURNPort, 65535)
	k.between("turn.relay_ports.max", t.RelayPorts.Max, minTURNPort, 65535)
	if t.RelayPorts.Min > t.RelayPorts.Max {
		k.add("turn.relay_ports", "min %d is above max %d", t.RelayPorts.Min, t.RelayPorts.Max)
	}
	names := map[string]bool{}
	for i, u := range t.Users {
		p := indexPath("turn.users", i)
		switch {
		case u.Name == "" || len(u.Name) > maxTURNUserLen || !printable(u.Name) || strings.ContainsAny(u.Name, ": "):
			k.add(p+".name", "%q: need 1..%d printable characters without ':' or spaces", clip(u.Name, 64), maxTURNUserLen)
		case names[u.Name]:
			k.add(p+".name", "%q is listed twice", u.Name)
		default:
			names[u.Name] = true
		}
		if _, err := TURNKey(u.Key); err != nil {
			k.add(p+".key", "%v", err)
		}
	}
	for i, s := range t.RESTSecrets {
		if err := checkTURNSecret(s, i, t.RESTSecrets[:i]); err != nil {
			k.add(indexPath("turn.rest_secrets", i), "%v", err)
		}
	}
	if len(t.Users) == 0 && len(t.RESTSecrets) == 0 && t.RESTSecretsFile == "" {
		k.add("turn", "no users, rest_secrets or rest_secrets_file: no client could authenticate (%s carries turn)", users[0])
	}
	for i, n := range t.AllowPeers {
		if _, err := ParseNetwork(n); err != nil {
			k.add(indexPath("turn.allow_peers", i), "%v", err)
		}
	}
	q := t.Quotas
	for _, f := range []struct {
		key string
		v   *int
	}{{"per_user", q.PerUser}, {"per_source", q.PerSource}, {"total", q.Total}} {
		if f.v != nil {
			k.between("turn.quotas."+f.key, *f.v, 0, maxTURNQuota)
		}
	}
	if q.MaxKbps != nil && *q.MaxKbps != 0 {
		k.between("turn.quotas.max_kbps", *q.MaxKbps, minTURNKbps, maxTURNKbps)
	}
	if q.MaxLifetime < minTURNMaxLifetime {
		k.add("turn.quotas.max_lifetime", "%s is shorter than %s", q.MaxLifetime, minTURNMaxLifetime)
	}
	if t.IdleTimeout < minTURNIdle {
		k.add("turn.idle_timeout", "%s is shorter than %s", t.IdleTimeout, minTURNIdle)
	}
}

func family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// TURNKey decodes a static user's long-term key: 32 hex digits (an MD5).
func TURNKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return nil, errors.New("need 32 hex digits: hex(MD5(name:realm:password)), as `pbxgate turn key NAME` prints")
	}
	return b, nil
}

func checkTURNSecret(s string, i int, before []string) error {
	if len(s) < minTURNSecretLen {
		return fmt.Errorf("secret %d is %d bytes; need at least %d (e.g. `openssl rand -hex 32`)", i, len(s), minTURNSecretLen)
	}
	for j, b := range before {
		if b == s {
			return fmt.Errorf("secret %d repeats secret %d", i, j)
		}
	}
	return nil
}

// TURNSecrets returns the REST API secrets in order: rest_secrets, then
// the lines of rest_secrets_file (blank lines and lines starting with #
// skipped). It reads the file each time it is called.
func (t *TURN) TURNSecrets() ([][]byte, error) {
	all := append([]string(nil), t.RESTSecrets...)
	if t.RESTSecretsFile != "" {
		b, err := os.ReadFile(t.RESTSecretsFile)
		if err != nil {
			return nil, fmt.Errorf("turn.rest_secrets_file: %w", err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := checkTURNSecret(line, len(all), all); err != nil {
				return nil, fmt.Errorf("turn.rest_secrets_file %s: %w", t.RESTSecretsFile, err)
			}
			all = append(all, line)
		}
		if len(all) == len(t.RESTSecrets) {
			return nil, fmt.Errorf("turn.rest_secrets_file %s: no secret in it", t.RESTSecretsFile)
		}
	}
	out := make([][]byte, len(all))
	for i, s := range all {
		out[i] = []byte(s)
	}
	return out, nil
}
