package firewall

import (
	"errors"
	"slices"
	"testing"
	"testing/fstest"
)

// fakeRunner is an nft.Runner answering from fields.
type fakeRunner struct {
	tables    []string
	tablesErr error
}

func (f *fakeRunner) Check(string) error        { return nil }
func (f *fakeRunner) Apply(string) error        { return nil }
func (f *fakeRunner) List() (string, error)     { return "", nil }
func (f *fakeRunner) Tables() ([]string, error) { return f.tables, f.tablesErr }

func TestDetectOthers(t *testing.T) {
	tests := []struct {
		name   string
		tables []string
		err    error
		files  fstest.MapFS
		want   []string
	}{
		{"nothing", []string{"inet pbxgate", "inet pbxgate_bl"}, nil, fstest.MapFS{}, []string{}},
		{"tables", []string{"inet pbxgate", "ip filter", "ip6 nat", "inet firewalld", "inet f2b-table", "ip docker-bridges", "ip crowdsec", "inet filter"}, nil, fstest.MapFS{},
			[]string{"crowdsec (table ip crowdsec)", "docker (table ip docker-bridges)", "fail2ban (table inet f2b-table)",
				"firewalld (table inet firewalld)", "iptables-nft (table ip filter, table ip6 nat)", "nftables (table inet filter)"}},
		{"files", nil, nil, fstest.MapFS{
			"run/docker.sock":            {},
			"run/fail2ban/fail2ban.sock": {},
			"etc/ufw/ufw.conf":           {Data: []byte("# comment\nENABLED=yes\nLOGLEVEL=low\n")},
			"etc/iptables/rules.v4":      {},
		}, []string{"docker (/run/docker.sock)", "fail2ban (/run/fail2ban/fail2ban.sock)", "iptables-persistent (/etc/iptables/rules.v4)", "ufw (/etc/ufw/ufw.conf ENABLED=yes)"}},
		{"ufw installed but disabled", nil, nil, fstest.MapFS{"etc/ufw/ufw.conf": {Data: []byte("ENABLED=no\n")}}, []string{}},
		{"nft fails", nil, errors.New("boom"), fstest.MapFS{}, []string{"unknown (nft tables not listed: boom)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := detectOthers(&fakeRunner{tables: tc.tables, tablesErr: tc.err}, tc.files)
			if !slices.Equal(got, tc.want) {
				t.Errorf("detectOthers =\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
