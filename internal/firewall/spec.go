package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is everything the host policy is built from. The zero Spec renders a
// policy that accepts only loopback, established/related traffic and the
// needed ICMP/ICMPv6, and drops everything else.
type Spec struct {
	// Roles to open, by name (see Roles). Duplicates are harmless.
	Roles []string
	// Ports are custom port rules.
	Ports []PortRule
	// Listeners are pbxgate's own listeners; each is opened to any source.
	Listeners []Listener
	// TURNRelay is the TURN relay port range, opened for udp and tcp. It is
	// required by the turn role. Nil opens no relay range.
	TURNRelay *PortRange
	// Trusted networks are accepted on every port and protocol, before any
	// flood limit.
	Trusted []netip.Prefix
	// AdminFrom are the sources the admin role opens AdminPort to. Empty:
	// role admin opens nothing. Setting it without role admin is an error.
	AdminFrom []netip.Prefix
	// AdminPort is the admin API's port; 0 means AdminPort (9190).
	AdminPort uint16
	// SIPFloodLimit, when not nil, rate-limits SIP per source in the kernel.
	SIPFloodLimit *FloodLimit
	// Geo are GeoIP rules: sources dropped by country on chosen ports,
	// after loopback and trusted networks are accepted and before the SIP
	// flood limit and every other accept. At most MaxGeoRules. Nil: none.
	Geo []GeoRule
}

// MaxGeoRules bounds Spec.Geo; MaxGeoElements bounds each of a rule's V4
// and V6 (a full GeoLite2-Country has about 500k networks in all, far fewer
// once one country's are merged).
const (
	MaxGeoRules    = 32
	MaxGeoElements = 1_000_000
)

// GeoRule drops, on Ports, the sources located in Countries (Allow false)
// or every source not located there (Allow true). The firewall does not
// read GeoIP databases: V4 and V6 are the networks a database locates in
// Countries (package geoip's Select), and Countries only label the rule in
// the script.
//
// It filters what sources send to the local ports, not replies: packets of
// connections this host opened (ct direction reply) skip every GeoIP rule,
// even when the local port of an outbound connection is one a rule covers
// (the ephemeral port range overlaps the usual TURN relay range).
type GeoRule struct {
	// Proto is "tcp", "udp", or "" for both.
	Proto string
	// Ports are the local ports covered; at least one.
	Ports []PortRange
	// Allow true: only sources in V4/V6 reach Ports; an empty V4 (or V6)
	// then drops every IPv4 (or IPv6) source on Ports. Allow false: the
	// sources in V4/V6 are dropped on Ports.
	Allow bool
	// Countries are ISO 3166-1 alpha-2 codes (two ASCII letters, any case);
	// at least one.
	Countries []string
	// V4 and V6 are the networks located in Countries. Overlapping and
	// adjacent prefixes are merged; IPv4-mapped IPv6 prefixes are an error.
	V4, V6 []netip.Prefix
}

// PortRange is the inclusive range Min..Max; Min == Max is one port.
type PortRange struct{ Min, Max uint16 }

// Port returns the range holding only p.
func Port(p uint16) PortRange { return PortRange{p, p} }

// ParsePortRange parses "5060" or "10000-20000".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(strings.TrimSpace(hi), 10, 16); err != nil {
			return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
		}
	}
	r := PortRange{uint16(a), uint16(b)}
	if err := r.validate(); err != nil {
		return PortRange{}, fmt.Errorf("port range %q: %w", s, err)
	}
	return r, nil
}

// String returns "5060" or "10000-20000", the nft notation.
func (r PortRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(int(r.Min))
	}
	return strconv.Itoa(int(r.Min)) + "-" + strconv.Itoa(int(r.Max))
}

func (r PortRange) validate() error {
	if r.Min == 0 {
		return errors.New("port 0 is not a port")
	}
	if r.Max < r.Min {
		return fmt.Errorf("range %d-%d ends before it starts", r.Min, r.Max)
	}
	return nil
}

// PortRule opens a port or port range for one protocol.
type PortRule struct {
	Proto string    // "tcp" or "udp"
	Ports PortRange // the port (Port(n)) or range
	// From limits the sources; empty means any source.
	From []netip.Prefix
	// Comment is shown in the script: as an nft rule comment for rules with
	// From, as a script comment otherwise. At most 128 bytes of printable
	// ASCII without double quote or backslash.
	Comment string
}

// Listener is one of pbxgate's configured listeners.
type Listener struct {
	Name  string // for the script's comments; printable ASCII, no quote
	Proto string // "tcp" or "udp"
	Port  uint16
}

// FloodLimit rate-limits SIP per source address in the kernel: UDP packets,
// and new TCP connections, above Rate per second (after Burst) to Ports are
// dropped. Trusted networks are accepted before the limit applies. A source
// over the limit is tracked for one minute after its last packet.
type FloodLimit struct {
	Rate  uint32   // packets (udp) or new connections (tcp) per second; > 0
	Burst uint32   // 0 means Rate
	Ports []uint16 // empty means 5060 and 5061
}

const maxComment = 128

// Validate returns every problem in s at once, joined, each wrapping
// ErrInvalidSpec and naming the field.
func (s *Spec) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalidSpec, field, fmt.Sprintf(format, a...)))
	}
	roles := map[string]bool{}
	for i, r := range s.Roles {
		if _, ok := roleInfo(r); !ok {
			bad(fmt.Sprintf("Roles[%d]", i), "unknown role %q (want one of sip, sip-tls, web, provisioning, admin, turn, ldap, ssh)", r)
		}
		roles[r] = true
	}
	if roles[RoleTURN] && s.TURNRelay == nil {
		bad("TURNRelay", "role turn needs the TURN relay port range")
	}
	if s.TURNRelay != nil {
		if err := s.TURNRelay.validate(); err != nil {
			bad("TURNRelay", "%v", err)
		}
	}
	if len(s.AdminFrom) > 0 && !roles[RoleAdmin] {
		bad("AdminFrom", "set but role admin is not enabled")
	}
	checkPrefixes := func(field string, ps []netip.Prefix) {
		for i, p := range ps {
			if !p.IsValid() {
				bad(fmt.Sprintf("%s[%d]", field, i), "invalid prefix")
			}
		}
	}
	checkPrefixes("Trusted", s.Trusted)
	checkPrefixes("AdminFrom", s.AdminFrom)
	for i, p := range s.Ports {
		f := fmt.Sprintf("Ports[%d]", i)
		if p.Proto != "tcp" && p.Proto != "udp" {
			bad(f+".Proto", "%q is not tcp or udp", p.Proto)
		}
		if err := p.Ports.validate(); err != nil {
			bad(f+".Ports", "%v", err)
		}
		checkPrefixes(f+".From", p.From)
		if err := checkText(p.Comment); err != nil {
			bad(f+".Comment", "%v", err)
		}
	}
	for i, l := range s.Listeners {
		f := fmt.Sprintf("Listeners[%d]", i)
		if l.Proto != "tcp" && l.Proto != "udp" {
			bad(f+".Proto", "%q is not tcp or udp", l.Proto)
		}
		if l.Port == 0 {
			bad(f+".Port", "port 0 is not a port")
		}
		if err := checkText(l.Name); err != nil {
			bad(f+".Name", "%v", err)
		}
	}
	if fl := s.SIPFloodLimit; fl != nil {
		if fl.Rate == 0 {
			bad("SIPFloodLimit.Rate", "must be > 0")
		}
		for i, p := range fl.Ports {
			if p == 0 {
				bad(fmt.Sprintf("SIPFloodLimit.Ports[%d]", i), "port 0 is not a port")
			}
		}
	}
	if len(s.Geo) > MaxGeoRules {
		bad("Geo", "%d rules, at most %d", len(s.Geo), MaxGeoRules)
	}
	for i, g := range s.Geo {
		f := fmt.Sprintf("Geo[%d]", i)
		if g.Proto != "" && g.Proto != "tcp" && g.Proto != "udp" {
			bad(f+".Proto", "%q is not tcp, udp or empty (both)", g.Proto)
		}
		if len(g.Ports) == 0 {
			bad(f+".Ports", "no port")
		}
		for j, r := range g.Ports {
			if err := r.validate(); err != nil {
				bad(fmt.Sprintf("%s.Ports[%d]", f, j), "%v", err)
			}
		}
		if len(g.Countries) == 0 {
			bad(f+".Countries", "no country")
		}
		for j, c := range g.Countries {
			if !isCountryCode(c) {
				bad(fmt.Sprintf("%s.Countries[%d]", f, j), "%q is not a two-letter country code", c)
			}
		}
		for _, fam := range []struct {
			name string
			ps   []netip.Prefix
			v4   bool
		}{{"V4", g.V4, true}, {"V6", g.V6, false}} {
			if len(fam.ps) > MaxGeoElements {
				bad(f+"."+fam.name, "%d networks, at most %d", len(fam.ps), MaxGeoElements)
				continue
			}
			for j, p := range fam.ps {
				switch {
				case !p.IsValid():
					bad(fmt.Sprintf("%s.%s[%d]", f, fam.name, j), "invalid prefix")
				case p.Addr().Is4() != fam.v4 || p.Addr().Is4In6():
					bad(fmt.Sprintf("%s.%s[%d]", f, fam.name, j), "%v is not an %s prefix", p, map[bool]string{true: "IPv4", false: "IPv6"}[fam.v4])
				}
			}
		}
	}
	return errors.Join(errs...)
}

func isCountryCode(s string) bool {
	return len(s) == 2 && isLetter(s[0]) && isLetter(s[1])
}

func isLetter(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }

// checkText accepts strings safe inside an nft double-quoted comment and a
// script comment line.
func checkText(s string) error {
	if len(s) > maxComment {
		return fmt.Errorf("longer than %d bytes", maxComment)
	}
	for _, r := range s {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return fmt.Errorf("contains %q (want printable ASCII without quotes or backslashes)", r)
		}
	}
	return nil
}
