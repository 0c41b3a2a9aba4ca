package firewall

import (
	"bufio"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/pbxgate/pbxgate/internal/firewall/nft"
)

// DetectOthers names the other firewall managers and nftables tables seen on
// this host, each with its evidence, e.g. "docker (/run/docker.sock)" or
// "iptables-nft (table ip filter)". An accept in pbxgate's table does not
// override a drop in another table, so the caller should warn about each.
// Evidence comes from run.Tables and from well-known files and enabled
// systemd units. The result is sorted; pbxgate's own tables are left out. A
// failure to list tables is reported as an entry, not an error.
func DetectOthers(run nft.Runner) []string {
	return detectOthers(run, os.DirFS("/"))
}

// managerFiles maps a path (relative to /) to the manager its presence
// shows.
var managerFiles = []struct{ path, name string }{
	{"run/firewalld", "firewalld"},
	{"var/run/firewalld", "firewalld"},
	{"etc/systemd/system/multi-user.target.wants/firewalld.service", "firewalld"},
	{"run/docker.sock", "docker"},
	{"var/run/docker.sock", "docker"},
	{"etc/systemd/system/multi-user.target.wants/docker.service", "docker"},
	{"run/fail2ban/fail2ban.sock", "fail2ban"},
	{"var/run/fail2ban/fail2ban.sock", "fail2ban"},
	{"etc/systemd/system/multi-user.target.wants/fail2ban.service", "fail2ban"},
	{"etc/iptables/rules.v4", "iptables-persistent"},
	{"etc/iptables/rules.v6", "iptables-persistent"},
	{"etc/systemd/system/sysinit.target.wants/nftables.service", "nftables.service"},
}

func detectOthers(run nft.Runner, fsys fs.FS) []string {
	evidence := map[string][]string{}
	add := func(name, ev string) {
		if !slices.Contains(evidence[name], ev) {
			evidence[name] = append(evidence[name], ev)
		}
	}
	tables, err := run.Tables()
	if err != nil {
		add("unknown", "nft tables not listed: "+err.Error())
	}
	for _, t := range tables {
		if name := tableOwner(t); name != "" {
			add(name, "table "+t)
		}
	}
	for _, f := range managerFiles {
		if _, err := fs.Stat(fsys, f.path); err == nil {
			add(f.name, "/"+f.path)
		}
	}
	if ufwEnabled(fsys) {
		add("ufw", "/etc/ufw/ufw.conf ENABLED=yes")
	}
	out := make([]string, 0, len(evidence))
	for name, ev := range evidence {
		out = append(out, name+" ("+strings.Join(ev, ", ")+")")
	}
	slices.Sort(out)
	return out
}

// tableOwner guesses who owns the nftables table "family name"; "" for
// pbxgate's own tables.
func tableOwner(t string) string {
	family, name, _ := strings.Cut(t, " ")
	switch {
	case t == nft.Table || t == "inet pbxgate_bl":
		return ""
	case name == "firewalld":
		return "firewalld"
	case strings.HasPrefix(name, "f2b-"):
		return "fail2ban"
	case strings.HasPrefix(name, "docker"):
		return "docker"
	case strings.HasPrefix(name, "crowdsec"):
		return "crowdsec"
	case family != "inet" && slices.Contains([]string{"filter", "nat", "mangle", "raw", "security"}, name):
		// iptables-nft (and so ufw, docker and libvirt on iptables) keep
		// their rules in these legacy-named tables.
		return "iptables-nft"
	}
	return "nftables"
}

func ufwEnabled(fsys fs.FS) bool {
	f, err := fsys.Open("etc/ufw/ufw.conf")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 0; n < 1000 && sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "ENABLED" {
			return strings.EqualFold(strings.Trim(strings.TrimSpace(v), `"'`), "yes")
		}
	}
	return false
}
