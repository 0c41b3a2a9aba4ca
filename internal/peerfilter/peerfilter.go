package peerfilter

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// Range is one entry of the default deny list.
type Range struct {
	Prefix netip.Prefix
	// Name says what the range is, e.g. "loopback"; Check reports
	// Name + " " + Prefix as the reason of a denial.
	Name string
}

// deniedRanges is the default deny list. Sources: IANA IPv4 Special-Purpose
// Address Registry and IANA IPv6 Special-Purpose Address Registry
// (https://www.iana.org/assignments/iana-ipv4-special-registry/,
// https://www.iana.org/assignments/iana-ipv6-special-registry/, RFC 6890), plus
// multicast, reserved and deprecated ranges from the address-space registries.
// Nested entries are allowed: the most specific one names the reason.
var deniedRanges = []Range{
	// IPv4.
	{netip.MustParsePrefix("0.0.0.0/8"), "this network"},                 // RFC 791, RFC 1122
	{netip.MustParsePrefix("10.0.0.0/8"), "private-use"},                 // RFC 1918
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space"},     // RFC 6598 (carrier-grade NAT)
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},                   // RFC 1122
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},              // RFC 3927; cloud metadata 169.254.169.254
	{netip.MustParsePrefix("172.16.0.0/12"), "private-use"},              // RFC 1918
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"}, // RFC 6890
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},             // RFC 5737 TEST-NET-1
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast"},      // RFC 7526 (deprecated)
	{netip.MustParsePrefix("192.168.0.0/16"), "private-use"},             // RFC 1918
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},             // RFC 2544
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},          // RFC 5737 TEST-NET-2
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},           // RFC 5737 TEST-NET-3
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},                  // RFC 5771
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"},                   // RFC 1112
	{netip.MustParsePrefix("255.255.255.255/32"), "limited broadcast"},   // RFC 919, RFC 8190

	// IPv6.
	{netip.MustParsePrefix("::/128"), "unspecified"},                  // RFC 4291
	{netip.MustParsePrefix("::1/128"), "loopback"},                    // RFC 4291
	{netip.MustParsePrefix("::/96"), "IPv4-compatible (deprecated)"},  // RFC 4291 2.5.5.1
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},           // RFC 4291; never matches: Check unmaps first
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64"},                  // RFC 6052; embeds IPv4
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},      // RFC 8215; embeds IPv4
	{netip.MustParsePrefix("100::/64"), "discard-only"},               // RFC 6666
	{netip.MustParsePrefix("2001::/23"), "IETF protocol assignments"}, // RFC 2928
	{netip.MustParsePrefix("2001::/32"), "Teredo"},                    // RFC 4380; embeds IPv4
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},         // RFC 3849
	{netip.MustParsePrefix("2002::/16"), "6to4"},                      // RFC 3056; embeds IPv4
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},               // RFC 4193
	{netip.MustParsePrefix("fe80::/10"), "link-local"},                // RFC 4291
	{netip.MustParsePrefix("fec0::/10"), "site-local (deprecated)"},   // RFC 3879
	{netip.MustParsePrefix("ff00::/8"), "multicast"},                  // RFC 4291
}

// Reasons for addresses that are not checked against any range.
const (
	reasonInvalid = "invalid address"
	reasonZone    = "address with zone"
)

// denyTable maps each denied prefix to its index in deniedRanges; reasons holds
// the precomputed reason strings so that Check does not allocate.
var (
	denyTable = new(bart.Table[int])
	reasons   = make([]string, len(deniedRanges))
)

func init() {
	for i, r := range deniedRanges {
		denyTable.Insert(r.Prefix, i)
		reasons[i] = r.Name + " " + r.Prefix.String()
	}
}

// DeniedRanges returns the default deny list, a fresh copy in a stable order.
func DeniedRanges() []Range {
	return append([]Range(nil), deniedRanges...)
}

// Filter decides whether a TURN relay may send to a peer address. It is
// immutable and safe for concurrent use. A nil *Filter denies the default deny
// list and allows nothing extra.
type Filter struct {
	allow *bart.Lite // nil when the allow list is empty
}

// New returns a Filter that denies [DeniedRanges] except for addresses inside
// one of the allow prefixes. Each allow prefix must be valid and written in
// its native family (10.20.0.0/16, not ::ffff:10.20.0.0/112); host bits are
// masked off. An allow prefix is taken at its word: 0.0.0.0/0 opens every IPv4
// address.
func New(allow []netip.Prefix) (*Filter, error) {
	var errs []error
	for i, p := range allow {
		switch {
		case !p.IsValid():
			errs = append(errs, fmt.Errorf("allow[%d] %q: invalid prefix", i, p.String()))
		case p.Addr().Is4In6():
			errs = append(errs, fmt.Errorf("allow[%d] %s: IPv4-mapped prefix, write it as IPv4", i, p))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("peerfilter: %w", errors.Join(errs...))
	}
	f := &Filter{}
	if len(allow) > 0 {
		f.allow = new(bart.Lite)
		for _, p := range allow {
			f.allow.Insert(p.Masked())
		}
	}
	return f, nil
}

// Check reports whether a relay may send to a. When it may not, reason names
// the cause: the denied range ("loopback 127.0.0.0/8"), "invalid address" or
// "address with zone". When it may, reason is "". Check does not allocate.
func (f *Filter) Check(a netip.Addr) (ok bool, reason string) {
	if !a.IsValid() {
		return false, reasonInvalid
	}
	if a.Zone() != "" {
		return false, reasonZone
	}
	a = a.Unmap()
	if f != nil && f.allow != nil && f.allow.Contains(a) {
		return true, ""
	}
	if i, denied := denyTable.Lookup(a); denied {
		return false, reasons[i]
	}
	return true, ""
}
