package sippolicy

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gaissmai/bart"
)

// DefaultExternal is the External pattern of a company that sets none:
// numbers of six or more digits, with an optional leading '+', are external
// (they leave the platform through a carrier); shorter ones are extensions.
const DefaultExternal = `^\+?[0-9]{6,}$`

var defaultExternal = regexp.MustCompile(DefaultExternal)

// Limits NewTenants enforces.
const (
	maxNameLen     = 128 // brand, company and user names
	maxDomainLen   = 253
	maxRoadwarrior = 3
	// MaxUserLen is the longest URI user part External and
	// BlockedDestination normalise; longer ones are treated as external and
	// blocked (fail closed).
	MaxUserLen = 256
)

// TenantsConfig lists the platform's brands and, under each, its companies
// (IvozProvider's model: a brand resells the platform to companies, each
// with its own PBX domain).
type TenantsConfig struct {
	Brands []BrandConfig
}

// BrandConfig is one brand.
type BrandConfig struct {
	// Name identifies the brand: non-empty, unique, at most 128 bytes of
	// UTF-8 without control characters or '/'.
	Name string
	// MaxCalls bounds the brand's concurrent external calls, all its
	// companies together. Zero means no limit; negative is an error.
	MaxCalls int
	// Companies are the brand's companies.
	Companies []CompanyConfig
}

// CompanyConfig is one company (one hosted PBX).
type CompanyConfig struct {
	// Name identifies the company: non-empty, unique across all brands, at
	// most 128 bytes of UTF-8 without control characters or '/'.
	Name string
	// Domains are the company's SIP domains, matched exactly but ignoring
	// ASCII case and one trailing dot. At least one is required; a domain
	// may belong to one company only. A domain is a host name (letters,
	// digits, '-', '_', dot-separated labels; IDNs in their xn-- form) or
	// an IP address (an IPv6 one with or without brackets), compared as
	// text: write an IPv6 address the way the phones do.
	Domains []string
	// AllowedNetworks are the networks the company's phones may use. Empty
	// turns the company's IP filter off. IPv4-mapped IPv6 prefixes are
	// taken as IPv4.
	AllowedNetworks []netip.Prefix
	// Users lists the users with per-user settings (roadwarriors); a user
	// not listed has none.
	Users []UserConfig
	// External is an RE2 regular expression matched against the dialled
	// URI user part (see Company.External); it decides which calls are
	// external and count toward MaxCalls. Empty means DefaultExternal.
	External string
	// MaxCalls bounds the company's concurrent external calls. Zero means
	// no limit; negative is an error.
	MaxCalls int
	// BlockedDestinations are RE2 regular expressions matched against the
	// dialled URI user part; a call to a matching destination is refused.
	// None by default. An empty pattern is an error (it would match every
	// destination).
	BlockedDestinations []string
}

// UserConfig is one user's settings.
type UserConfig struct {
	// Name is the SIP user as written in From (percent escapes and case
	// kept; compared exactly): non-empty, unique in the company, at most
	// 128 bytes without control characters or spaces.
	Name string
	// CallsFromOtherNetworks is how many concurrent calls the user may make
	// from outside the company's AllowedNetworks, 0 to 3. A value above
	// zero makes the user a roadwarrior.
	CallsFromOtherNetworks int
}

// Brand is a validated brand. It is immutable.
type Brand struct {
	Name     string
	MaxCalls int // 0 = no limit

	key string // Counter key "brand/<Name>"
}

// Company is a validated company. Its methods are safe for concurrent use;
// it is immutable.
type Company struct {
	Name  string
	Brand *Brand

	key        string // Counter key "company/<Name>"
	maxCalls   int
	nets       *bart.Lite // nil when the IP filter is off
	users      map[string]int
	external   *regexp.Regexp
	blocked    []*regexp.Regexp
	blockedSrc []string
}

// Tenants is a validated tenants configuration: the lookup from SIP domain
// to company and each company's policy. It is immutable and safe for
// concurrent use. A reload builds a new Tenants; Calls keeps working with
// the companies of the old one until their calls end.
type Tenants struct {
	companies []*Company
	byDomain  map[string]*Company // lower-case, no trailing dot, no brackets
	networks  []netip.Prefix
}

// NewTenants validates c and builds the tenants. It reports every problem
// at once (errors.Join), each wrapping ErrConfig and naming the brand,
// company and field. It has no side effects.
func NewTenants(c TenantsConfig) (*Tenants, error) {
	var errs []error
	bad := func(where, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{ErrConfig, where}, a...)...))
	}
	t := &Tenants{byDomain: make(map[string]*Company)}
	brandSeen := make(map[string]bool)
	companySeen := make(map[string]string) // company name -> where first defined
	netSeen := make(map[netip.Prefix]bool)
	for bi, bc := range c.Brands {
		bw := placeName("brands", bi, "brand", bc.Name)
		if msg := checkName(bc.Name); msg != "" {
			bad(bw, "name: %s", msg)
		} else if brandSeen[bc.Name] {
			bad(bw, "name: duplicate brand")
		}
		brandSeen[bc.Name] = true
		if bc.MaxCalls < 0 {
			bad(bw, "max_calls %d: must not be negative", bc.MaxCalls)
		}
		b := &Brand{Name: bc.Name, MaxCalls: bc.MaxCalls, key: "brand/" + bc.Name}
		for ci, cc := range bc.Companies {
			cw := bw + ": " + placeName("companies", ci, "company", cc.Name)
			co, cerrs := buildCompany(cw, cc, b)
			errs = append(errs, cerrs...)
			if checkName(cc.Name) == "" {
				if first, dup := companySeen[cc.Name]; dup {
					bad(cw, "name: duplicate company (also in %s)", first)
				} else {
					companySeen[cc.Name] = bw
				}
			}
			for di, d := range cc.Domains {
				key, ok := normDomain(d)
				if !ok {
					continue // reported by buildCompany
				}
				if other, dup := t.byDomain[key]; dup {
					if other == co {
						bad(cw, "domains[%d] %q: listed twice", di, d)
					} else {
						bad(cw, "domains[%d] %q: already a domain of company %q", di, d, other.Name)
					}
					continue
				}
				t.byDomain[key] = co
			}
			for _, p := range cc.AllowedNetworks {
				if p, ok := normPrefix(p); ok && !netSeen[p] {
					netSeen[p] = true
					t.networks = append(t.networks, p)
				}
			}
			t.companies = append(t.companies, co)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// buildCompany validates everything of cc that does not need the other
// companies.
func buildCompany(where string, cc CompanyConfig, b *Brand) (*Company, []error) {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{ErrConfig, where}, a...)...))
	}
	co := &Company{
		Name:     cc.Name,
		Brand:    b,
		key:      "company/" + cc.Name,
		maxCalls: cc.MaxCalls,
		external: defaultExternal,
	}
	if msg := checkName(cc.Name); msg != "" {
		bad("name: %s", msg)
	}
	if cc.MaxCalls < 0 {
		bad("max_calls %d: must not be negative", cc.MaxCalls)
	}
	if len(cc.Domains) == 0 {
		bad("domains: at least one is required")
	}
	for i, d := range cc.Domains {
		if _, ok := normDomain(d); !ok {
			bad("domains[%d] %q: not a host name or IP address", i, d)
		}
	}
	for i, p := range cc.AllowedNetworks {
		np, ok := normPrefix(p)
		if !ok {
			bad("allowed_networks[%d] %v: not a valid prefix (an IPv4-mapped one must be at least /96)", i, p)
			continue
		}
		if co.nets == nil {
			co.nets = new(bart.Lite)
		}
		co.nets.Insert(np)
	}
	if len(cc.Users) > 0 {
		co.users = make(map[string]int, len(cc.Users))
	}
	for i, u := range cc.Users {
		uw := placeName("users", i, "user", u.Name)
		switch {
		case u.Name == "":
			bad("%s: name: empty", uw)
		case len(u.Name) > maxNameLen:
			bad("%s: name: longer than %d bytes", uw, maxNameLen)
		case strings.ContainsFunc(u.Name, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			bad("%s: name: contains a space or control character", uw)
		default:
			if _, dup := co.users[u.Name]; dup {
				bad("%s: name: duplicate user", uw)
			}
		}
		if u.CallsFromOtherNetworks < 0 || u.CallsFromOtherNetworks > maxRoadwarrior {
			bad("%s: calls_from_other_networks %d: must be between 0 and %d", uw, u.CallsFromOtherNetworks, maxRoadwarrior)
		}
		co.users[u.Name] = u.CallsFromOtherNetworks
	}
	if cc.External != "" {
		re, err := regexp.Compile(cc.External)
		if err != nil {
			bad("external %q: %v", cc.External, err)
		} else {
			co.external = re
		}
	}
	for i, p := range cc.BlockedDestinations {
		if p == "" {
			bad("blocked_destinations[%d]: empty pattern", i)
			continue
		}
		re, err := regexp.Compile(p)
		if err != nil {
			bad("blocked_destinations[%d] %q: %v", i, p, err)
			continue
		}
		co.blocked = append(co.blocked, re)
		co.blockedSrc = append(co.blockedSrc, p)
	}
	return co, errs
}

// placeName names a list element for an error: `brand "acme"`, or
// `brands[2]` when the name is empty.
func placeName(list string, i int, kind, name string) string {
	if name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s %q", kind, name)
}

// checkName returns what is wrong with a brand or company name, or "".
func checkName(s string) string {
	switch {
	case s == "":
		return "empty"
	case len(s) > maxNameLen:
		return fmt.Sprintf("longer than %d bytes", maxNameLen)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case strings.ContainsRune(s, '/'):
		return "contains '/'" // it separates the parts of Counter keys
	case strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "contains a control character"
	}
	return ""
}

// normDomain returns the lookup key of a configured domain: lower-case,
// without one trailing dot and without IPv6 brackets.
func normDomain(d string) (string, bool) {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	inner := d
	bracketed := len(d) >= 2 && d[0] == '[' && d[len(d)-1] == ']'
	if bracketed {
		inner = d[1 : len(d)-1]
	}
	if a, err := netip.ParseAddr(inner); err == nil {
		if a.Zone() != "" || bracketed && !a.Is6() {
			return "", false
		}
		return inner, true
	}
	if bracketed {
		return "", false
	}
	if d == "" || len(d) > maxDomainLen {
		return "", false
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", false
			}
		}
	}
	return d, true
}

// normPrefix returns p masked, an IPv4-mapped prefix as IPv4.
func normPrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return p, false
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return p, false
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// CompanyByDomain returns the company whose domain is domain, ignoring
// ASCII case, one trailing dot and IPv6 brackets, or nil. It does not
// allocate.
func (t *Tenants) CompanyByDomain(domain []byte) *Company {
	if n := len(domain); n >= 2 && domain[0] == '[' && domain[n-1] == ']' && bytes.IndexByte(domain, ':') >= 0 {
		domain = domain[1 : n-1]
	}
	if n := len(domain); n > 0 && domain[n-1] == '.' {
		domain = domain[:n-1]
	}
	var buf [maxDomainLen]byte
	if len(domain) > len(buf) {
		return nil
	}
	for i, c := range domain {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return t.byDomain[string(buf[:len(domain)])]
}

// Networks returns the union of every company's AllowedNetworks (masked,
// IPv4-mapped ones as IPv4, duplicates dropped, in config order): the
// company networks the anti-flood limiter exempts. The slice is the
// caller's.
func (t *Tenants) Networks() []netip.Prefix {
	return append([]netip.Prefix(nil), t.networks...)
}

// Companies returns every company in config order (brand by brand). The
// slice is the caller's.
func (t *Tenants) Companies() []*Company {
	return append([]*Company(nil), t.companies...)
}

// MaxCalls returns the company's limit of concurrent external calls; zero
// means no limit.
func (c *Company) MaxCalls() int { return c.maxCalls }

// FilterOn reports whether the company has AllowedNetworks, that is
// whether its phones are filtered by source address.
func (c *Company) FilterOn() bool { return c.nets != nil }

// Inside reports whether a is in the company's AllowedNetworks
// (IPv4-mapped addresses count as IPv4). It is true for every address when
// the filter is off, and false for the invalid Addr when it is on. It does
// not allocate.
func (c *Company) Inside(a netip.Addr) bool {
	if c.nets == nil {
		return true
	}
	a = a.Unmap()
	return a.IsValid() && c.nets.Contains(a)
}

// Roadwarrior returns how many concurrent calls user may make from outside
// the company's networks: its CallsFromOtherNetworks, 0 for a user not
// configured. user is compared exactly (as written in From). It does not
// allocate.
func (c *Company) Roadwarrior(user []byte) int {
	return c.users[string(user)]
}

// External reports whether a call to the dialled URI user part user is
// external, by the company's External pattern. user is normalised first
// (see dialled), so "%2B34-91-123-4567" is matched as "+34911234567". A
// user part longer than MaxUserLen is external. It does not allocate.
func (c *Company) External(user []byte) bool {
	if len(user) <= MaxUserLen && !needsDialled(user) {
		return c.external.Match(user)
	}
	buf := userBufs.Get().(*[MaxUserLen]byte)
	defer userBufs.Put(buf)
	d, ok := dialled(buf, user)
	return !ok || c.external.Match(d)
}

// BlockedDestination reports whether the dialled URI user part user
// matches one of the company's BlockedDestinations, normalised as for
// External, and returns the first matching pattern. A user part longer
// than MaxUserLen is blocked by the first pattern when the company has
// any. It does not allocate.
func (c *Company) BlockedDestination(user []byte) (pattern string, blocked bool) {
	if len(c.blocked) == 0 {
		return "", false
	}
	d := user
	if len(user) > MaxUserLen {
		return c.blockedSrc[0], true
	}
	if needsDialled(user) {
		buf := userBufs.Get().(*[MaxUserLen]byte)
		defer userBufs.Put(buf)
		d, _ = dialled(buf, user)
	}
	for i, re := range c.blocked {
		if re.Match(d) {
			return c.blockedSrc[i], true
		}
	}
	return "", false
}

// userBufs holds dialled's buffers: the regexp package keeps its input in
// pooled machines, so a buffer on the stack would escape to the heap.
var userBufs = sync.Pool{New: func() any { return new([MaxUserLen]byte) }}

// dialled normalises a URI user part into buf for number matching, the way
// a PBX's dial plan reads it, so that an escape or a separator cannot move
// a number past External or BlockedDestinations: percent escapes are
// decoded (an invalid escape is kept as written); then, when what precedes
// the first ';' is a phone number – an optional '+' followed by digits,
// '*', '#' and the RFC 3966 visual separators '-', '.', '(' and ')', with
// at least one digit – the separators and the ';' parameters are dropped.
// Anything else is returned decoded. ok is false when user is longer than
// buf.
func dialled(buf *[MaxUserLen]byte, user []byte) (d []byte, ok bool) {
	if len(user) > len(buf) {
		return nil, false
	}
	n := 0
	for i := 0; i < len(user); i++ {
		c := user[i]
		if c == '%' && i+2 < len(user) && isHex(user[i+1]) && isHex(user[i+2]) {
			c = unhex(user[i+1])<<4 | unhex(user[i+2])
			i += 2
		}
		buf[n] = c
		n++
	}
	d = buf[:n]
	num := d
	for i, c := range d {
		if c == ';' {
			num = d[:i]
			break
		}
	}
	digits := 0
	for i, c := range num {
		switch {
		case '0' <= c && c <= '9':
			digits++
		case c == '*' || c == '#' || c == '-' || c == '.' || c == '(' || c == ')':
		case c == '+' && i == 0:
		default:
			return d, true
		}
	}
	if digits == 0 {
		return d, true
	}
	n = 0
	for _, c := range num {
		if c != '-' && c != '.' && c != '(' && c != ')' {
			buf[n] = c
			n++
		}
	}
	return buf[:n], true
}

// needsDialled reports whether dialled would change user.
func needsDialled(user []byte) bool {
	number, sep, digits := true, false, 0
	for i, c := range user {
		switch {
		case c == '%' || c == ';':
			return true
		case '0' <= c && c <= '9':
			digits++
		case c == '-' || c == '.' || c == '(' || c == ')':
			sep = true
		case c == '*' || c == '#':
		case c == '+' && i == 0:
		default:
			number = false
		}
	}
	return number && sep && digits > 0
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
