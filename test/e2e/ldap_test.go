package e2e

import (
	"strings"
	"testing"
)

const ldapConfig = `data_dir: {{.DataDir}}
tls:
  certificates:
    - {name: a, cert: {{.A}}, key: {{.AKey}}}
listeners:
  - name: dir
    address: {{.Dir}}
    protocols: [ldap]
  - name: dirs
    address: {{.Dirs}}
    tls: optional
    protocols: [ldap]
services:
  - name: example
    protocol: ldap
    domains: [example.com, EXAMPLE]
    backend: {address: {{.Slapd}}}
`

func TestLDAP(t *testing.T) {
	t.Parallel()
	needBinary(t, "ldapsearch", "ldap-utils")
	slapd := startSlapd(t)
	p := newPKI(t)
	dir, dirs := freeAddr(t), freeAddr(t)
	g := startGateway(t, render(t, ldapConfig, map[string]any{
		"A": p.A, "AKey": p.AKey, "Dir": dir, "Dirs": dirs, "Slapd": slapd,
	}))

	search := func(t *testing.T, env []string, url, bindDN, password string) (string, int) {
		t.Helper()
		args := []string{"-x", "-H", url, "-b", slapdSuffix, "-s", "base"}
		if bindDN != "" {
			args = append(args, "-D", bindDN, "-w", password)
		}
		return ldapsearch(t, env, args...)
	}
	wantEntry := func(t *testing.T, out string, code int) {
		t.Helper()
		if code != 0 {
			t.Fatalf("ldapsearch exit %d, want 0:\n%s", code, out)
		}
		if !strings.Contains(out, "dn: "+slapdSuffix) || !strings.Contains(out, "result: 0 Success") {
			t.Fatalf("ldapsearch did not return the base entry:\n%s", out)
		}
	}

	t.Run("bind and search through the gateway", func(t *testing.T) {
		out, code := search(t, nil, "ldap://"+dir, slapdAdmin, slapdPass)
		wantEntry(t, out, code)
	})

	t.Run("wrong password", func(t *testing.T) {
		out, code := search(t, nil, "ldap://"+dir, slapdAdmin, "wrong")
		if code != 49 {
			t.Fatalf("ldapsearch exit %d, want 49 (invalidCredentials):\n%s", code, out)
		}
		g.waitEvent(map[string]string{
			"kind": "rejected_by_service", "reason": "invalid_credentials",
			"service": "example", "listener": "dir", "src": "127.0.0.1",
		})
	})

	t.Run("ldaps on a tls optional listener", func(t *testing.T) {
		out, code := search(t, []string{"LDAPTLS_CACERT=" + p.CA, "LDAPTLS_REQCERT=demand"},
			"ldaps://127.0.0.1:"+portOf(dirs), slapdAdmin, slapdPass)
		wantEntry(t, out, code)
	})

	t.Run("plain ldap on the same tls optional listener", func(t *testing.T) {
		out, code := search(t, nil, "ldap://"+dirs, slapdAdmin, slapdPass)
		wantEntry(t, out, code)
	})

	t.Run("unknown domain refused", func(t *testing.T) {
		out, code := search(t, nil, "ldap://"+dir, "cn=admin,dc=other,dc=org", slapdPass)
		if code == 0 || strings.Contains(out, "dn: ") {
			t.Fatalf("bind to an unknown domain was served (exit %d):\n%s", code, out)
		}
		g.waitEvent(map[string]string{
			"kind": "rejected_by_gateway", "reason": "unknown_domain", "listener": "dir", "src": "127.0.0.1",
		})
	})

	t.Run("anonymous bind refused by default", func(t *testing.T) {
		out, code := search(t, nil, "ldap://"+dir, "", "")
		if code == 0 || strings.Contains(out, "dn: ") {
			t.Fatalf("anonymous search was served (exit %d):\n%s", code, out)
		}
		g.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "bind_refused", "listener": "dir"})
	})
}
