package firewall

import (
	"net/netip"
	"slices"
)

// Allows reports whether the policy rendered from s accepts a new
// connection (tcp) or a first packet (udp) from src to the local port: what
// `pbxgate firewall apply` asks about the current SSH client before it
// loads a ruleset. GeoIP rules are modelled (a source they drop is not
// allowed); established traffic, ICMP and loopback are not (loopback
// sources are always accepted), nor is the SIP flood limit, which only
// drops a source above its rate. s must be valid.
func (s *Spec) Allows(proto string, port uint16, src netip.Addr) bool {
	src = src.Unmap()
	if src.IsLoopback() || inAny(s.Trusted, src) {
		return true
	}
	covers := func(r PortRange) bool { return r.Min <= port && port <= r.Max }
	for _, g := range s.Geo {
		if (g.Proto == "" || g.Proto == proto) && slices.ContainsFunc(g.Ports, covers) {
			located := inAny(g.V6, src)
			if src.Is4() {
				located = inAny(g.V4, src)
			}
			if located != g.Allow {
				return false
			}
		}
	}
	for _, name := range s.Roles {
		if name == RoleAdmin {
			ap := s.AdminPort
			if ap == 0 {
				ap = AdminPort
			}
			if proto == "tcp" && port == ap && inAny(s.AdminFrom, src) {
				return true
			}
			continue
		}
		info, _ := roleInfo(name)
		if slices.ContainsFunc(info.Open, func(o Opening) bool { return o.Proto == proto && covers(o.Ports) }) {
			return true
		}
	}
	if s.TURNRelay != nil && covers(*s.TURNRelay) {
		return true
	}
	for _, l := range s.Listeners {
		if l.Proto == proto && l.Port == port {
			return true
		}
	}
	for _, r := range s.Ports {
		if r.Proto == proto && covers(r.Ports) && (len(r.From) == 0 || inAny(r.From, src)) {
			return true
		}
	}
	return false
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if unmapPrefix(p).Contains(a) {
			return true
		}
	}
	return false
}
