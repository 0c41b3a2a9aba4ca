// Package fwconfig turns pbxgate's configuration into the host firewall's
// Spec: the firewall section's roles, trusted networks, custom ports, SIP
// flood limit and GeoIP rules, plus the ports of pbxgate's own listeners,
// the admin API's port and the TURN relay range.
//
// It reads the GeoIP database when the configuration has GeoIP rules, and
// nothing else; it does not render, check or load rulesets (package
// firewall and its safety net do).
package fwconfig

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/firewall"
	"github.com/pbxgate/pbxgate/internal/geoip"
)

// Spec returns the firewall Spec for cfg, which must be valid (config.Load
// validates), and warnings an operator should read before applying it.
func Spec(cfg *config.Config) (firewall.Spec, []string, error) {
	f := &cfg.Firewall
	spec := firewall.Spec{
		Roles:     slices.Clone(f.Roles),
		Trusted:   config.Networks(f.TrustedNetworks),
		AdminFrom: config.Networks(f.AdminFrom),
	}
	var warnings []string
	if slices.Contains(f.Roles, firewall.RoleAdmin) {
		_, port, err := config.SplitHostPort(cfg.Admin.Address)
		if err != nil {
			return firewall.Spec{}, nil, fmt.Errorf("admin.address: %w", err)
		}
		spec.AdminPort = uint16(port)
	}
	for i, p := range f.Ports {
		r, err := firewall.ParsePortRange(p.Port)
		if err != nil {
			return firewall.Spec{}, nil, fmt.Errorf("firewall.ports[%d].port: %w", i, err)
		}
		spec.Ports = append(spec.Ports, firewall.PortRule{Proto: p.Proto, Ports: r, From: config.Networks(p.From), Comment: p.Comment})
	}
	if *f.OpenListeners {
		for _, l := range cfg.Listeners {
			if config.IsLoopbackAddress(l.Address) {
				continue // loopback is always accepted
			}
			_, port, err := config.SplitHostPort(l.Address)
			if err == nil && port == 0 {
				err = fmt.Errorf("%q has no port", l.Address)
			}
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("listener %s: %v: its port is not opened", l.Name, err))
				continue
			}
			spec.Listeners = append(spec.Listeners, firewall.Listener{Name: l.Name, Proto: l.Transport, Port: uint16(port)})
		}
	}
	if cfg.ServesTURN() && (*f.OpenListeners || slices.Contains(f.Roles, firewall.RoleTURN)) {
		spec.TURNRelay = &firewall.PortRange{Min: uint16(cfg.TURN.RelayPorts.Min), Max: uint16(cfg.TURN.RelayPorts.Max)}
	}
	if fl := f.SIPFloodLimit; fl.Rate > 0 {
		limit := &firewall.FloodLimit{Rate: uint32(fl.Rate), Burst: uint32(fl.Burst)}
		for _, p := range fl.Ports {
			limit.Ports = append(limit.Ports, uint16(p))
		}
		if len(limit.Ports) == 0 {
			limit.Ports = sipPorts(cfg)
		}
		spec.SIPFloodLimit = limit
	}
	if len(f.GeoIP.Rules) > 0 {
		geo, geoWarnings, err := geoRules(f.GeoIP)
		if err != nil {
			return firewall.Spec{}, nil, err
		}
		spec.Geo = geo
		warnings = append(warnings, geoWarnings...)
	}
	if !opensSSH(spec) {
		if len(spec.Trusted) == 0 {
			warnings = append(warnings, "nothing opens ssh (port 22/tcp) and there are no trusted_networks: after apply, this host is reachable over SSH from nowhere; add role ssh or a trusted network")
		} else {
			warnings = append(warnings, "nothing opens ssh (port 22/tcp): SSH reaches this host only from trusted_networks")
		}
	}
	return spec, warnings, nil
}

// geoTimeout bounds reading the GeoIP database (a full country database
// takes well under a second).
const geoTimeout = 2 * time.Minute

// geoRules reads the database once and returns the rules with their
// networks, warning about countries the database locates nothing in (a
// wrong code such as UK for GB, or a database without them).
func geoRules(g config.FirewallGeoIP) ([]firewall.GeoRule, []string, error) {
	db, err := geoip.Open(g.Database)
	if err != nil {
		return nil, nil, fmt.Errorf("firewall.geoip.database: %w", err)
	}
	defer db.Close()
	groups := make([][]string, len(g.Rules))
	rules := make([]firewall.GeoRule, len(g.Rules))
	for i, r := range g.Rules {
		rules[i].Proto, rules[i].Allow, groups[i] = r.Proto, len(r.Allow) > 0, r.Deny
		if rules[i].Allow {
			groups[i] = r.Allow
		}
		for _, c := range groups[i] {
			rules[i].Countries = append(rules[i].Countries, strings.ToUpper(c))
		}
		for j, ps := range r.Ports {
			pr, err := firewall.ParsePortRange(ps)
			if err != nil {
				return nil, nil, fmt.Errorf("firewall.geoip.rules[%d].ports[%d]: %w", i, j, err)
			}
			rules[i].Ports = append(rules[i].Ports, pr)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), geoTimeout)
	defer cancel()
	nets, stats, err := db.Select(ctx, groups...)
	if err != nil {
		return nil, nil, fmt.Errorf("firewall.geoip.database %s: %w", g.Database, err)
	}
	for i := range rules {
		rules[i].V4, rules[i].V6 = nets[i].V4, nets[i].V6
	}
	var warnings []string
	codes := make([]string, 0, len(stats.ByCountry))
	for c, n := range stats.ByCountry {
		if n == 0 {
			codes = append(codes, c)
		}
	}
	slices.Sort(codes)
	for _, c := range codes {
		warnings = append(warnings, fmt.Sprintf("firewall.geoip: the database %s locates no network in %s (a wrong code? the United Kingdom is GB)", g.Database, c))
	}
	return rules, warnings, nil
}

// sipPorts returns the ports of the listeners carrying sip, sorted, without
// duplicates; nil if there are none.
func sipPorts(cfg *config.Config) []uint16 {
	var out []uint16
	for _, l := range cfg.Listeners {
		if !slices.Contains(l.Protocols, config.ProtoSIP) {
			continue
		}
		if _, port, err := config.SplitHostPort(l.Address); err == nil && port > 0 && !slices.Contains(out, uint16(port)) {
			out = append(out, uint16(port))
		}
	}
	slices.Sort(out)
	return out
}

func opensSSH(s firewall.Spec) bool {
	if slices.Contains(s.Roles, firewall.RoleSSH) {
		return true
	}
	for _, l := range s.Listeners {
		if l.Proto == "tcp" && l.Port == 22 {
			return true
		}
	}
	for _, p := range s.Ports {
		if p.Proto == "tcp" && p.Ports.Min <= 22 && 22 <= p.Ports.Max && len(p.From) == 0 {
			return true
		}
	}
	return false
}
