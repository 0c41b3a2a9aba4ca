package config

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/firewall"
)

// Bounds of the firewall section.
const (
	minFirewallTest  = Duration(30 * time.Second)
	maxFirewallTest  = Duration(24 * time.Hour)
	minKernelResync  = Duration(10 * time.Second)
	maxKernelResync  = Duration(time.Hour)
	maxFloodRate     = 1_000_000
	maxFirewallNote  = 128
	geoCountryLength = 2
)

// firewall checks the firewall section.
func (k *checker) firewall() {
	f := &k.c.Firewall
	roles := map[string]bool{}
	known := make([]string, 0, 8)
	for _, r := range firewall.Roles() {
		known = append(known, r.Role)
	}
	for i, r := range f.Roles {
		p := indexPath("firewall.roles", i)
		switch {
		case !slices.Contains(known, r):
			k.add(p, "%q is not a role; one of %s", clip(r, 32), strings.Join(known, ", "))
		case roles[r]:
			k.add(p, "%q is listed twice", r)
		}
		roles[r] = true
	}
	if roles[firewall.RoleTURN] && !k.c.ServesTURN() {
		k.add("firewall.roles", "role turn opens the TURN relay range, but no listener carries turn")
	}
	if roles[firewall.RoleAdmin] {
		switch {
		case len(f.AdminFrom) == 0:
			k.add("firewall.admin_from", "required with role admin: the networks that may reach the admin API")
		case k.c.Admin.Address == Off:
			k.add("firewall.roles", "role admin, but admin.address is off")
		default:
			if host, _, err := SplitHostPort(k.c.Admin.Address); err == nil {
				if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
					k.add("firewall.roles", "role admin, but admin.address %s listens on loopback only; set admin.address to an address admin_from can reach", k.c.Admin.Address)
				}
			}
		}
	} else if len(f.AdminFrom) > 0 {
		k.add("firewall.admin_from", "set, but role admin is not in firewall.roles")
	}
	k.networkList("firewall.trusted_networks", f.TrustedNetworks)
	k.networkList("firewall.admin_from", f.AdminFrom)
	for i, pr := range f.Ports {
		p := indexPath("firewall.ports", i)
		k.oneOf(p+".proto", pr.Proto, "tcp", "udp")
		if pr.Port == "" {
			k.add(p+".port", "required: a port (5080) or a range (10000-20000)")
		} else if _, err := firewall.ParsePortRange(pr.Port); err != nil {
			k.add(p+".port", "%v", err)
		}
		k.networkList(p+".from", pr.From)
		k.firewallText(p+".comment", pr.Comment)
	}
	fl := f.SIPFloodLimit
	k.between("firewall.sip_flood_limit.rate", fl.Rate, 0, maxFloodRate)
	k.between("firewall.sip_flood_limit.burst", fl.Burst, 0, maxFloodRate)
	if fl.Rate == 0 && (fl.Burst != 0 || len(fl.Ports) > 0) {
		k.add("firewall.sip_flood_limit.rate", "required when burst or ports are set (0 turns the limit off)")
	}
	for i, port := range fl.Ports {
		k.between(indexPath("firewall.sip_flood_limit.ports", i), port, 1, 65535)
	}
	g := f.GeoIP
	if len(g.Rules) > 0 && g.Database == "" {
		k.add("firewall.geoip.database", "required with geoip rules: a MaxMind-format country database (.mmdb)")
	}
	for i, r := range g.Rules {
		p := indexPath("firewall.geoip.rules", i)
		if r.Proto != "" {
			k.oneOf(p+".proto", r.Proto, "tcp", "udp")
		}
		if len(r.Ports) == 0 {
			k.add(p+".ports", "required: the ports the rule covers")
		}
		for j, s := range r.Ports {
			if _, err := firewall.ParsePortRange(s); err != nil {
				k.add(indexPath(p+".ports", j), "%v", err)
			}
		}
		switch {
		case len(r.Allow) > 0 && len(r.Deny) > 0:
			k.add(p, "set allow or deny, not both")
		case len(r.Allow) == 0 && len(r.Deny) == 0:
			k.add(p, "needs allow or deny: a list of country codes like DE")
		}
		k.countries(p+".allow", r.Allow)
		k.countries(p+".deny", r.Deny)
	}
	if f.StateDir == "" {
		k.add("firewall.state_dir", "required")
	}
	k.durationBetween("firewall.test_duration", f.TestDuration, minFirewallTest, maxFirewallTest)
	k.durationBetween("firewall.kernel_blacklist.resync", f.KernelBlacklist.Resync, minKernelResync, maxKernelResync)
}

func (k *checker) networkList(path string, list []string) {
	for i, s := range list {
		if _, err := ParseNetwork(s); err != nil {
			k.add(indexPath(path, i), "%v", err)
		}
	}
}

func (k *checker) firewallText(path, s string) {
	bad := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) >= 0
	if len(s) > maxFirewallNote || bad {
		k.add(path, "%q: at most %d printable ASCII characters without quotes or backslashes", clip(s, 64), maxFirewallNote)
	}
}

func (k *checker) countries(path string, codes []string) {
	seen := map[string]bool{}
	for i, c := range codes {
		p := indexPath(path, i)
		up := strings.ToUpper(c)
		if len(c) != geoCountryLength || up[0] < 'A' || up[0] > 'Z' || up[1] < 'A' || up[1] > 'Z' {
			k.add(p, "%q is not a two-letter country code (ISO 3166-1 alpha-2, like DE)", clip(c, 16))
			continue
		}
		if seen[up] {
			k.add(p, "%s is listed twice", up)
		}
		seen[up] = true
	}
}

func (k *checker) durationBetween(path string, d, lo, hi Duration) {
	if d < lo || d > hi {
		k.add(path, "%s is out of range %s..%s", d, lo, hi)
	}
}
