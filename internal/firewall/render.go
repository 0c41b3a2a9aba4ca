package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go4.org/netipx"
)

// Names of the sets in table inet pbxgate. Every script deletes the table
// and defines it again in the same transaction, so the table's state
// depends only on the last script applied (`flush table` would keep sets,
// their elements and chains a later script no longer declares).
const (
	setTrusted4 = "trusted4"
	setTrusted6 = "trusted6"
	setFloodU4  = "sipflood_udp4"
	setFloodU6  = "sipflood_udp6"
	setFloodT4  = "sipflood_tcp4"
	setFloodT6  = "sipflood_tcp6"
)

// icmpEchoLimit bounds echo requests accepted per second (per family).
const icmpEchoLimit = "limit rate 10/second burst 20 packets"

// Render returns the nftables script for spec: one file that `nft -f`
// applies atomically and idempotently. It creates table inet pbxgate if
// missing (so that the delete succeeds), deletes it and defines it in full,
// all in one transaction: the kernel switches from the old table to the new
// one at once, or keeps the old one if anything fails. The output is deterministic: the
// same spec (in any order, except GeoIP rules, whose sets are named by
// position) gives the same bytes.
func Render(spec Spec) (string, error) {
	if err := spec.Validate(); err != nil {
		return "", err
	}
	p := plan(spec)
	var b strings.Builder
	w := func(indent int, format string, a ...any) {
		b.WriteString(strings.Repeat("\t", indent))
		fmt.Fprintf(&b, format, a...)
		b.WriteByte('\n')
	}
	w(0, "# pbxgate host firewall policy (table inet pbxgate). Generated; do not edit.")
	w(0, "# Applied atomically with nft -f; other tables are never touched.")
	w(0, "table inet pbxgate {}")
	w(0, "delete table inet pbxgate")
	w(0, "table inet pbxgate {")
	w(1, "set %s {", setTrusted4)
	w(2, "type ipv4_addr")
	w(2, "flags interval")
	w(1, "}")
	w(1, "set %s {", setTrusted6)
	w(2, "type ipv6_addr")
	w(2, "flags interval")
	w(1, "}")
	for _, s := range [][2]string{{setFloodU4, "ipv4_addr"}, {setFloodU6, "ipv6_addr"}, {setFloodT4, "ipv4_addr"}, {setFloodT6, "ipv6_addr"}} {
		w(1, "set %s {", s[0])
		w(2, "type %s", s[1])
		w(2, "size 65535")
		w(2, "flags dynamic,timeout")
		w(2, "timeout 1m")
		w(1, "}")
	}
	// After the sets every script has: nft lists objects in the order they
	// were made, and the GeoIP sets come and go with the rules.
	for i := range p.geo {
		for _, f := range geoFamilies {
			w(1, "set %s {", geoSet(i, f.suffix))
			w(2, "type %s", f.typ)
			w(2, "flags interval")
			w(1, "}")
		}
	}
	w(0, "")
	w(1, "chain input {")
	w(2, "type filter hook input priority filter; policy drop;")
	w(2, `iif "lo" accept`)
	w(2, "# Trusted networks: every port, before any flood limit.")
	w(2, "ip saddr @%s accept", setTrusted4)
	w(2, "ip6 saddr @%s accept", setTrusted6)
	if len(p.geo) > 0 {
		w(2, "# GeoIP rules (chain geo) see what sources send: packets of connections they")
		w(2, "# open, and untracked packets. Replies to connections this host opened")
		w(2, "# (ct direction reply) skip them, even on a port a rule covers: an outbound")
		w(2, "# connection's local port comes from the ephemeral range, which may overlap a")
		w(2, "# rule's ports (the TURN relay range does). Invalid packets are dropped below.")
		w(2, "ct direction original jump %s", chainGeo)
		w(2, "ct state untracked jump %s", chainGeo)
	}
	if p.flood != "" {
		// UDP "connections" turn established after the first answer, so
		// the UDP limit sits before the conntrack accept.
		w(2, "# SIP flood limit per source: udp packets.")
		w(2, "udp dport %s update @%s { ip saddr limit rate over %s } drop", p.floodPorts, setFloodU4, p.flood)
		w(2, "udp dport %s update @%s { ip6 saddr limit rate over %s } drop", p.floodPorts, setFloodU6, p.flood)
	}
	w(2, "ct state established,related accept")
	w(2, "ct state invalid drop")
	w(2, "# ICMP errors needed for path MTU discovery and diagnostics (RFC 1122, RFC 1191).")
	w(2, "icmp type { destination-unreachable, time-exceeded, parameter-problem } accept")
	w(2, "icmp type echo-request %s accept", icmpEchoLimit)
	w(2, "# ICMPv6 that must not be dropped (RFC 4890 section 4.4.1), plus time-exceeded")
	w(2, "# and parameter-problem of all codes (4.4.2); 148/149 are SEND certificate")
	w(2, "# path, 151-153 multicast router discovery.")
	w(2, "icmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, "+
		"nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, "+
		"ind-neighbor-solicit, ind-neighbor-advert, mld-listener-query, mld-listener-report, "+
		"mld-listener-done, mld2-listener-report, 148, 149, 151, 152, 153 } accept")
	w(2, "icmpv6 type echo-request %s accept", icmpEchoLimit)
	if p.flood != "" {
		// Established TCP was accepted above: this limits new connections.
		w(2, "# SIP flood limit per source: new tcp connections.")
		w(2, "tcp dport %s update @%s { ip saddr limit rate over %s } drop", p.floodPorts, setFloodT4, p.flood)
		w(2, "tcp dport %s update @%s { ip6 saddr limit rate over %s } drop", p.floodPorts, setFloodT6, p.flood)
	}
	if len(p.why) > 0 {
		w(2, "# Open to any source:")
		for _, line := range p.why {
			w(2, "#   %s", line)
		}
	}
	for _, proto := range []string{"tcp", "udp"} {
		if rs := p.open[proto]; len(rs) > 0 {
			w(2, "%s dport %s accept", proto, rangeSet(rs))
		}
	}
	if len(p.fromRules) > 0 {
		w(2, "# Open to some sources only:")
		for _, r := range p.fromRules {
			w(2, "%s", r)
		}
	}
	w(1, "}")
	if len(p.geo) > 0 {
		w(0, "")
		w(1, "chain %s {", chainGeo)
		for i, g := range p.geo {
			if g.allow {
				w(2, "# Rule %d: allow %s on %s: sources located elsewhere, or not located, are dropped.", i, g.countries, g.on)
			} else {
				w(2, "# Rule %d: deny %s on %s: sources located there are dropped.", i, g.countries, g.on)
			}
			for _, f := range geoFamilies {
				if len(g.elems[f.suffix]) == 0 {
					if g.allow {
						w(2, "# No %s network is located in %s: every %s source is dropped on these ports.", f.name, g.countries, f.name)
					} else {
						w(2, "# No %s network is located in %s: this rule drops no %s source.", f.name, g.countries, f.name)
					}
				}
				op := ""
				if g.allow {
					op = "!= "
				}
				w(2, "%s %s saddr %s@%s drop", g.match, f.nfproto, op, geoSet(i, f.suffix))
			}
		}
		w(1, "}")
	}
	w(0, "}")
	if len(p.trusted4) > 0 {
		w(0, "add element inet pbxgate %s { %s }", setTrusted4, joinPrefixes(p.trusted4))
	}
	if len(p.trusted6) > 0 {
		w(0, "add element inet pbxgate %s { %s }", setTrusted6, joinPrefixes(p.trusted6))
	}
	// GeoIP sets are large: one element per line.
	for i, g := range p.geo {
		for _, f := range geoFamilies {
			elems := g.elems[f.suffix]
			if len(elems) == 0 {
				continue
			}
			w(0, "add element inet pbxgate %s {", geoSet(i, f.suffix))
			for j, e := range elems {
				if j < len(elems)-1 {
					w(1, "%s,", e)
				} else {
					w(1, "%s", e)
				}
			}
			w(0, "}")
		}
	}
	return b.String(), nil
}

// chainGeo holds the GeoIP rules; input jumps to it.
const chainGeo = "geo"

// geoFamilies are the two sets of each GeoIP rule.
var geoFamilies = []struct {
	suffix, typ, nfproto, name string
}{
	{"4", "ipv4_addr", "ip", "IPv4"},
	{"6", "ipv6_addr", "ip6", "IPv6"},
}

// geoSet names the set of GeoIP rule i for family suffix "4" or "6".
func geoSet(i int, suffix string) string { return "geo" + strconv.Itoa(i) + "_" + suffix }

// Uninstall returns the script that deletes table inet pbxgate and nothing
// else. It succeeds whether or not the table exists.
func Uninstall() string {
	return "# Remove pbxgate's host firewall policy; other tables are untouched.\n" +
		"table inet pbxgate {}\n" +
		"delete table inet pbxgate\n"
}

// policy is a Spec reduced to what the script needs, sorted and merged.
type policy struct {
	trusted4, trusted6 []netip.Prefix
	open               map[string][]PortRange // any source, by proto, merged
	why                []string               // "tcp 80: role web, listener https"
	fromRules          []string               // rendered per-source rules, sorted
	flood              string                 // "20/second burst 40 packets"; "" when off
	floodPorts         string
	geo                []geoPolicy // in Spec order
}

// geoPolicy is a GeoRule ready to print.
type geoPolicy struct {
	allow     bool
	match     string              // "tcp dport 443", "meta l4proto { tcp, udp } th dport 5060"
	on        string              // "tcp 443", "tcp+udp 5060" for the comment
	countries string              // "AT, DE"
	elems     map[string][]string // by family suffix: merged elements, "192.0.2.0/24" or "a-b"
}

func planGeo(g GeoRule) geoPolicy {
	ports := rangeSet(mergeRanges(g.Ports))
	gp := geoPolicy{allow: g.Allow, elems: map[string][]string{"4": intervals(g.V4), "6": intervals(g.V6)}}
	if g.Proto == "" {
		gp.match = "meta l4proto { tcp, udp } th dport " + ports
		gp.on = "tcp+udp " + ports
	} else {
		gp.match = g.Proto + " dport " + ports
		gp.on = g.Proto + " " + ports
	}
	codes := make([]string, len(g.Countries))
	for i, c := range g.Countries {
		codes[i] = strings.ToUpper(c)
	}
	slices.Sort(codes)
	gp.countries = strings.Join(slices.Compact(codes), ", ")
	return gp
}

// intervals merges ps (one family) into the fewest disjoint, non-adjacent
// intervals, each printed as a prefix when it is one and as "first-last"
// otherwise, in ascending order: elements an interval set takes without
// auto-merge.
func intervals(ps []netip.Prefix) []string {
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p.Masked())
	}
	set, _ := b.IPSet() // Validate rejected invalid prefixes
	rs := set.Ranges()
	out := make([]string, len(rs))
	for i, r := range rs {
		if p, ok := r.Prefix(); ok {
			out[i] = prefixString(p)
		} else {
			out[i] = r.From().String() + "-" + r.To().String()
		}
	}
	return out
}

func plan(s Spec) policy {
	var p policy
	p.trusted4, p.trusted6 = splitPrefixes(s.Trusted)

	type key struct {
		proto string
		r     PortRange
	}
	reasons := map[key]map[string]bool{}
	openPort := func(proto string, r PortRange, why string) {
		k := key{proto, r}
		if reasons[k] == nil {
			reasons[k] = map[string]bool{}
		}
		reasons[k][why] = true
	}
	var from []fromRule
	for _, name := range s.Roles {
		info, _ := roleInfo(name)
		if name == RoleAdmin {
			if len(s.AdminFrom) > 0 {
				port := s.AdminPort
				if port == 0 {
					port = AdminPort
				}
				from = append(from, fromRule{proto: "tcp", ports: Port(port), from: s.AdminFrom, comment: "role admin"})
			}
			continue
		}
		for _, o := range info.Open {
			openPort(o.Proto, o.Ports, "role "+name)
		}
		if name == RoleTURN && s.TURNRelay != nil {
			openPort("udp", *s.TURNRelay, "role turn relay range")
			openPort("tcp", *s.TURNRelay, "role turn relay range")
		}
	}
	if s.TURNRelay != nil && !slices.Contains(s.Roles, RoleTURN) {
		openPort("udp", *s.TURNRelay, "turn relay range")
		openPort("tcp", *s.TURNRelay, "turn relay range")
	}
	for _, l := range s.Listeners {
		openPort(l.Proto, Port(l.Port), "listener "+l.Name)
	}
	for _, r := range s.Ports {
		if len(r.From) > 0 {
			from = append(from, fromRule{proto: r.Proto, ports: r.Ports, from: r.From, comment: r.Comment})
			continue
		}
		why := "port rule"
		if r.Comment != "" {
			why += " " + r.Comment
		}
		openPort(r.Proto, r.Ports, why)
	}

	keys := make([]key, 0, len(reasons))
	for k := range reasons {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.r.Min, b.r.Min), cmp.Compare(a.r.Max, b.r.Max))
	})
	p.open = map[string][]PortRange{}
	for _, k := range keys {
		p.open[k.proto] = append(p.open[k.proto], k.r)
		whys := make([]string, 0, len(reasons[k]))
		for w := range reasons[k] {
			whys = append(whys, w)
		}
		slices.Sort(whys)
		p.why = append(p.why, k.proto+" "+k.r.String()+": "+strings.Join(whys, ", "))
	}
	for proto, rs := range p.open {
		p.open[proto] = mergeRanges(rs)
	}

	type line struct {
		proto string
		ports PortRange
		text  string
	}
	var lines []line
	for _, r := range from {
		for _, text := range r.render() {
			lines = append(lines, line{r.proto, r.ports, text})
		}
	}
	slices.SortFunc(lines, func(a, b line) int {
		return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.ports.Min, b.ports.Min),
			cmp.Compare(a.ports.Max, b.ports.Max), strings.Compare(a.text, b.text))
	})
	for i, l := range lines {
		if i == 0 || l.text != lines[i-1].text {
			p.fromRules = append(p.fromRules, l.text)
		}
	}

	for _, g := range s.Geo {
		p.geo = append(p.geo, planGeo(g))
	}

	if fl := s.SIPFloodLimit; fl != nil {
		burst := fl.Burst
		if burst == 0 {
			burst = fl.Rate
		}
		p.flood = fmt.Sprintf("%d/second burst %d packets", fl.Rate, burst)
		ports := fl.Ports
		if len(ports) == 0 {
			ports = []uint16{5060, 5061}
		}
		rs := make([]PortRange, len(ports))
		for i, pt := range ports {
			rs[i] = Port(pt)
		}
		p.floodPorts = rangeSet(mergeRanges(rs))
	}
	return p
}

type fromRule struct {
	proto   string
	ports   PortRange
	from    []netip.Prefix
	comment string
}

// render returns one line per address family present in from.
func (r fromRule) render() []string {
	v4, v6 := splitPrefixes(r.from)
	tail := fmt.Sprintf(" %s dport %s accept", r.proto, r.ports)
	if r.comment != "" {
		tail += " comment " + strconv.Quote(r.comment)
	}
	var lines []string
	if len(v4) > 0 {
		lines = append(lines, "ip saddr "+prefixSet(v4)+tail)
	}
	if len(v6) > 0 {
		lines = append(lines, "ip6 saddr "+prefixSet(v6)+tail)
	}
	return lines
}

// splitPrefixes masks, unmaps (::ffff:a.b.c.d/len ≥ 96 becomes IPv4),
// sorts and aggregates ps into IPv4 and IPv6 lists with no prefix contained
// in another, as nft interval sets require.
func splitPrefixes(ps []netip.Prefix) (v4, v6 []netip.Prefix) {
	for _, p := range ps {
		if !p.IsValid() {
			continue
		}
		p = unmapPrefix(p)
		p = netip.PrefixFrom(p.Addr().WithZone(""), p.Bits()).Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return aggregate(v4), aggregate(v6)
}

func aggregate(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	out := ps[:0]
	for _, p := range ps {
		// Sorted by start address, shorter first: a prefix containing p, if
		// kept, is the last one kept.
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// mergeRanges sorts rs and merges overlapping and adjacent ranges.
func mergeRanges(rs []PortRange) []PortRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b PortRange) int {
		return cmp.Or(cmp.Compare(a.Min, b.Min), cmp.Compare(a.Max, b.Max))
	})
	var out []PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && int(r.Min) <= int(out[n-1].Max)+1 {
			out[n-1].Max = max(out[n-1].Max, r.Max)
			continue
		}
		out = append(out, r)
	}
	return out
}

func rangeSet(rs []PortRange) string {
	if len(rs) == 1 {
		return rs[0].String()
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return "{ " + strings.Join(parts, ", ") + " }"
}

func prefixSet(ps []netip.Prefix) string {
	if len(ps) == 1 {
		return prefixString(ps[0])
	}
	return "{ " + joinPrefixes(ps) + " }"
}

func joinPrefixes(ps []netip.Prefix) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = prefixString(p)
	}
	return strings.Join(parts, ", ")
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix of at least /96
// (::ffff:a.b.c.d/len) into its IPv4 prefix; others are returned as they
// are (a mapped prefix shorter than /96 covers more than IPv4 space).
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
