package httpproxy

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Path rules (text for docs/; keep in sync with the code below)
//
// Each HTTP service may carry path rules (YAML field names as the config
// package spells them):
//
//	rules:
//	  default: deny            # "allow" | "deny" | empty
//	  deny:
//	    - pattern: "= /"
//	    - pattern: "= /login.php"
//	    - pattern: "= /index.php"
//	  allow:
//	    - pattern: "/app/provision/"
//	    - pattern: "= /app/xml_cdr/xml_cdr_import.php"
//	      methods: [POST]
//	      networks: [10.20.0.0/16]
//
// Patterns
//
//   - "= /index.php"  exact: the path must be exactly /index.php.
//   - "/app/provision/"  prefix: every path that starts with /app/provision/.
//     End a directory prefix with "/": "/app" also matches "/apple".
//   - A pattern containing '*', '?' or '[' is a glob matched against the whole
//     path: '*' matches any run of characters within one path segment (never
//     '/'), '**' matches any run including '/', and "/**/" also matches a single
//     "/" (so "/a/**/b" matches "/a/b" and "/a/x/y/b", and "/a/**" matches
//     everything below /a/ but not /a itself); '?' matches one character
//     other than '/'; "[abc]", "[a-z]", "[!a-z]" ("[^a-z]") match one character of
//     (or not of) a class, never '/'. There is no escape character: write "[*]"
//     for a literal '*'.
//   - Every pattern starts with "/" and is written in normal form: decoded (no
//     %XX except %25 for a literal '%'), without "//", "/./" or "/../".
//
// Methods and networks
//
//   - methods: upper-case method names; empty means any method. GET also covers
//     HEAD (a HEAD request runs the same script).
//   - networks: CIDR prefixes of the client address; empty means any source.
//     Behind a trusted proxy the client address is taken from X-Forwarded-For.
//
// Evaluation
//
//  1. A deny rule whose pattern, method and network all match: denied (403).
//  2. An allow rule whose pattern, method and network all match: allowed. If
//     some allow rule matches the path but none matches the method and network,
//     the request is denied: the path is reserved to those methods and sources
//     (this is how "the CDR import URL only from the SIP nodes' network" is
//     written).
//  3. Otherwise the default decides. An empty default means "deny" when there
//     are allow rules and "allow" when there are none.
//
// Normalization (why spelling tricks do not work)
//
// Rules are matched against the normalized path: percent escapes decoded, "."
// and ".." segments removed, repeated slashes collapsed. "//login.php",
// "/./login.php", "/a/../login.php" and "/%6cogin.php" all match
// "= /login.php". Requests are refused with 400 when the path contains an
// encoded slash (%2F), a backslash (raw or %5C), a control byte (raw or encoded),
// a malformed escape, or when the request target is not origin-form ("*" is
// accepted for OPTIONS only; absolute-form and CONNECT targets are refused).
//
// The request sent to the backend keeps its original target: rewriting it could
// change what the application sees (signatures, routers that read the raw
// URI). This is safe because every spelling a backend can resolve to a given
// resource normalizes to the same path the rules see: decoding, dot-segment
// removal and slash merging are exactly what web servers do before mapping a
// path to a file or route, and the spellings where servers disagree (encoded
// slashes, backslashes, control bytes) are refused outright. Where a backend
// is more literal than the normalization (for example it does not merge "//"),
// the rules see a path at least as specific as the backend's, so a deny rule
// can only deny more, never less.
//
// Matching is case-sensitive, as URLs are. A backend on a case-insensitive file
// system (Windows/IIS) would serve /LOGIN.PHP for /login.php: write a glob such
// as "/[lL][oO][gG][iI][nN].php" there. Path parameters (";jsessionid=...") and
// PHP PATH_INFO ("/login.php/extra") are not stripped: to cover
// "/login.php/anything" as well, add the prefix rule "/login.php/".

// RuleSpec is one path rule as configured.
type RuleSpec struct {
	// Pattern is "= /exact", a prefix "/dir/", or a glob such as
	// "/app/*.php" or "/static/**". It must start with "/" and be in normal
	// form (see NormalizePath).
	Pattern string
	// Methods limits the rule to these upper-case methods. Empty: any
	// method. GET also covers HEAD.
	Methods []string
	// Networks limits the rule to clients in these networks. Empty: any
	// client.
	Networks []netip.Prefix
}

// RulesSpec is a service's path rule set as configured.
type RulesSpec struct {
	// Default is "allow", "deny" or "" ("deny" if Allow has entries, else
	// "allow").
	Default string
	// Allow and Deny are the rules; see the package documentation for how
	// they combine.
	Allow, Deny []RuleSpec
}

// Rules is a compiled, immutable rule set. A nil *Rules allows everything.
// It is safe for concurrent use.
type Rules struct {
	deny, allow  []rule
	defaultAllow bool
	defaultWhy   string
}

type matchKind uint8

const (
	matchExact matchKind = iota + 1
	matchPrefix
	matchGlob
)

type rule struct {
	kind     matchKind
	lit      string // exact path, prefix, or a glob's literal prefix
	glob     *glob
	methods  []string
	nets     []netip.Prefix
	why      string // `deny "= /login.php"`
	restrict string // allow rules: why a path-only match denies
}

// Decision texts that are not tied to one rule.
const (
	whyNoRules      = "no rules"
	whyDefaultAllow = "allowed (default allow)"
	whyDefaultDeny  = "not allowed (default deny)"
	whyBadPath      = "bad path"
)

// CompileRules checks and compiles s. Every problem is reported (joined with
// errors.Join), each naming the rule and its pattern and wrapping
// ErrBadPattern.
func CompileRules(s RulesSpec) (*Rules, error) {
	var errs []error
	r := &Rules{}
	switch s.Default {
	case "allow":
		r.defaultAllow = true
	case "deny":
	case "":
		r.defaultAllow = len(s.Allow) == 0
	default:
		errs = append(errs, fmt.Errorf("%w: default %q: want \"allow\", \"deny\" or empty", ErrBadPattern, s.Default))
	}
	r.defaultWhy = whyDefaultDeny
	if r.defaultAllow {
		r.defaultWhy = whyDefaultAllow
	}
	for i, spec := range s.Deny {
		ru, err := compileRule(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("deny[%d] %q: %w", i, spec.Pattern, err))
			continue
		}
		ru.why = "deny " + strconv.Quote(spec.Pattern)
		r.deny = append(r.deny, ru)
	}
	for i, spec := range s.Allow {
		ru, err := compileRule(spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow[%d] %q: %w", i, spec.Pattern, err))
			continue
		}
		ru.why = "allow " + strconv.Quote(spec.Pattern)
		ru.restrict = "not allowed: " + strconv.Quote(spec.Pattern) + " is reserved to other methods or sources"
		r.allow = append(r.allow, ru)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

func compileRule(spec RuleSpec) (rule, error) {
	var errs []error
	var ru rule
	p := spec.Pattern
	switch {
	case strings.HasPrefix(p, "="):
		ru.kind = matchExact
		p = strings.TrimLeft(p[1:], " \t")
	case strings.ContainsAny(p, "*?["):
		ru.kind = matchGlob
	default:
		ru.kind = matchPrefix
	}
	if err := checkPatternPath(p); err != nil {
		errs = append(errs, err)
	} else if ru.kind == matchGlob {
		g, err := compileGlob(p)
		if err != nil {
			errs = append(errs, err)
		}
		ru.glob = g
		if g != nil {
			ru.lit = g.prefix
		}
	} else {
		ru.lit = p
	}
	hasGet, hasHead := false, false
	for _, m := range spec.Methods {
		if err := checkMethod(m); err != nil {
			errs = append(errs, err)
			continue
		}
		hasGet = hasGet || m == "GET"
		hasHead = hasHead || m == "HEAD"
		ru.methods = append(ru.methods, m)
	}
	if hasGet && !hasHead {
		ru.methods = append(ru.methods, "HEAD")
	}
	for _, n := range spec.Networks {
		if !n.IsValid() {
			errs = append(errs, fmt.Errorf("%w: invalid network %v", ErrBadPattern, n))
			continue
		}
		if n.Addr().Is4In6() && n.Bits() >= 96 {
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		ru.nets = append(ru.nets, n.Masked())
	}
	return ru, errors.Join(errs...)
}

func checkPatternPath(p string) error {
	if p == "" || p[0] != '/' {
		return fmt.Errorf("%w: must start with \"/\"", ErrBadPattern)
	}
	n, err := NormalizePath(p)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadPattern, err)
	}
	if n != p {
		return fmt.Errorf("%w: not in normal form, write %q", ErrBadPattern, n)
	}
	return nil
}

func checkMethod(m string) error {
	if m == "" {
		return fmt.Errorf("%w: empty method", ErrBadPattern)
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
			// an RFC 9110 token, as the config package accepts
		case c >= 'a' && c <= 'z':
			return fmt.Errorf("%w: method %q must be upper-case", ErrBadPattern, m)
		default:
			return fmt.Errorf("%w: invalid method %q", ErrBadPattern, m)
		}
	}
	return nil
}

// Decide reports whether a request for path (the request path as sent,
// without the query; "*" for "OPTIONS *") by method from src is allowed,
// and why, as a short text such as `deny "= /login.php"` or
// `not allowed (default deny)`. A path NormalizePath refuses is denied with
// why "bad path". Decide does not allocate for paths already in normal form.
func (r *Rules) Decide(method, path string, src netip.Addr) (allow bool, why string) {
	if r == nil {
		return true, whyNoRules
	}
	if path != "*" {
		n, err := NormalizePath(path)
		if err != nil {
			return false, whyBadPath
		}
		path = n
	}
	return r.decide(method, path, src.Unmap())
}

// decide is Decide for a normalized path and an unmapped source.
func (r *Rules) decide(method, path string, src netip.Addr) (bool, string) {
	if r == nil {
		return true, whyNoRules
	}
	for i := range r.deny {
		ru := &r.deny[i]
		if ru.matchPath(path) && ru.matchMethod(method) && ru.matchNet(src) {
			return false, ru.why
		}
	}
	restricted := -1
	for i := range r.allow {
		ru := &r.allow[i]
		if !ru.matchPath(path) {
			continue
		}
		if ru.matchMethod(method) && ru.matchNet(src) {
			return true, ru.why
		}
		if restricted < 0 {
			restricted = i
		}
	}
	if restricted >= 0 {
		return false, r.allow[restricted].restrict
	}
	return r.defaultAllow, r.defaultWhy
}

func (ru *rule) matchPath(p string) bool {
	switch ru.kind {
	case matchExact:
		return p == ru.lit
	case matchPrefix:
		return strings.HasPrefix(p, ru.lit)
	case matchGlob:
		return strings.HasPrefix(p, ru.lit) && ru.glob.match(p)
	}
	return false
}

func (ru *rule) matchMethod(m string) bool {
	if len(ru.methods) == 0 {
		return true
	}
	for _, x := range ru.methods {
		if x == m {
			return true
		}
	}
	return false
}

func (ru *rule) matchNet(a netip.Addr) bool {
	if len(ru.nets) == 0 {
		return true
	}
	for _, n := range ru.nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// NormalizePath returns the form of an origin-form request path (without
// query) that path rules are matched against: percent escapes decoded
// (except that a literal '%' stays "%25", so the result is a fixed point),
// "." and ".." segments removed as in RFC 3986 section 5.2.4, and runs of
// slashes collapsed. A trailing slash is kept.
//
// It refuses, with an error wrapping ErrBadPath, a path that does not start
// with "/", that contains an encoded slash (%2F), a backslash (raw or %5C), a
// control byte (raw or encoded), or a malformed escape: backends disagree on
// what those mean, so no rule could be sure to cover them.
//
// The request forwarded upstream keeps its original spelling; normalization
// only decides which rule applies. That is safe because backends resolve a
// path by the same decoding, dot-segment removal and slash merging before
// they map it to a resource, so every spelling that reaches a resource
// normalizes to that resource's path, and the ambiguous spellings are
// refused.
//
// A path already in normal form is returned as is, without allocating.
func NormalizePath(p string) (string, error) {
	if p == "" || p[0] != '/' {
		return "", errNotOriginForm
	}
	clean := true
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c < 0x20 || c == 0x7f:
			return "", errControl
		case c == '\\':
			return "", errBackslash
		case c == '%':
			clean = false
		case c == '/' && clean:
			if isDotOrEmptySegment(p[i+1:]) {
				clean = false
			}
		}
	}
	if clean {
		return p, nil
	}
	return normalizeSlow(p)
}

// isDotOrEmptySegment reports whether the segment at the start of rest
// (which follows a '/') is empty but not final, ".", or "..".
func isDotOrEmptySegment(rest string) bool {
	if rest == "" {
		return false // trailing slash: fine
	}
	switch rest[0] {
	case '/':
		return true
	case '.':
		if len(rest) == 1 || rest[1] == '/' {
			return true
		}
		if rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
			return true
		}
	}
	return false
}

func normalizeSlow(p string) (string, error) {
	buf := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			if i+2 >= len(p) {
				return "", errBadEscape
			}
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return "", errBadEscape
			}
			i += 2
			c = hi<<4 | lo
			switch {
			case c == '/':
				return "", errEncodedSlash
			case c == '\\':
				return "", errBackslash
			case c < 0x20 || c == 0x7f:
				return "", errControl
			case c == '%':
				buf = append(buf, "%25"...)
				continue
			}
		}
		buf = append(buf, c)
	}
	// buf[0] == '/' since p[0] == '/'. Walk the segments after it.
	out := make([]byte, 0, len(buf))
	trailing := false
	for i := 1; i <= len(buf); {
		var seg []byte
		last := false
		if j := indexByte(buf[i:], '/'); j < 0 {
			seg, last = buf[i:], true
			i = len(buf) + 1
		} else {
			seg = buf[i : i+j]
			i += j + 1
		}
		switch {
		case len(seg) == 0, len(seg) == 1 && seg[0] == '.':
			trailing = last
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if k := lastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
			trailing = last
		default:
			out = append(out, '/')
			out = append(out, seg...)
			trailing = false
		}
	}
	if len(out) == 0 || trailing {
		out = append(out, '/')
	}
	return string(out), nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Globs are matched by simulating a small NFA over the pattern's elements
// with a fixed-size bit set, so matching is linear in the path length times
// the pattern length, never backtracks, and does not allocate.

const maxGlobElems = 255 // states 0..maxGlobElems fit in stateSet

type stateSet [4]uint64

func (s *stateSet) set(i int)      { s[i>>6] |= 1 << (i & 63) }
func (s *stateSet) has(i int) bool { return s[i>>6]&(1<<(i&63)) != 0 }
func (s *stateSet) empty() bool    { return s[0]|s[1]|s[2]|s[3] == 0 }

type elemKind uint8

const (
	elemLit   elemKind = iota // one literal rune
	elemOne                   // '?'
	elemClass                 // [...]
	elemStar                  // '*'
	elemStars                 // '**'
)

type globElem struct {
	kind  elemKind
	r     rune
	class *runeClass
	eps   int // if > 0: being at this element also means being at eps
}

type runeClass struct {
	neg    bool
	ranges [][2]rune
}

func (c *runeClass) match(r rune) bool {
	in := false
	for _, rg := range c.ranges {
		if r >= rg[0] && r <= rg[1] {
			in = true
			break
		}
	}
	return in != c.neg
}

type glob struct {
	elems  []globElem
	prefix string // literal text before the first wildcard
	suffix string // literal text after the last wildcard
}

func compileGlob(p string) (*glob, error) {
	g := &glob{}
	prefixDone := false
	for i := 0; i < len(p); {
		r, w := utf8.DecodeRuneInString(p[i:])
		switch r {
		case '*':
			j := i
			for j < len(p) && p[j] == '*' {
				j++
			}
			if j-i >= 2 {
				g.elems = append(g.elems, globElem{kind: elemStars})
			} else {
				g.elems = append(g.elems, globElem{kind: elemStar})
			}
			prefixDone = true
			i = j
			continue
		case '?':
			g.elems = append(g.elems, globElem{kind: elemOne})
			prefixDone = true
		case '[':
			c, n, err := parseClass(p[i:])
			if err != nil {
				return nil, err
			}
			g.elems = append(g.elems, globElem{kind: elemClass, class: c})
			prefixDone = true
			i += n
			continue
		default:
			g.elems = append(g.elems, globElem{kind: elemLit, r: r})
			if !prefixDone {
				g.prefix = p[:i+w]
			}
		}
		i += w
	}
	if len(g.elems) > maxGlobElems {
		return nil, fmt.Errorf("%w: glob too long (at most %d elements)", ErrBadPattern, maxGlobElems)
	}
	if i := strings.LastIndexAny(p, "*?]"); i >= 0 && strings.ContainsAny(p, "*?[") {
		g.suffix = p[i+1:]
	}
	for k := range g.elems {
		e := &g.elems[k]
		switch e.kind {
		case elemStar, elemStars:
			e.eps = k + 1
		case elemLit:
			// "/**/" also matches "/": from the first '/' skip to the second.
			if e.r == '/' && k+2 < len(g.elems) && g.elems[k+1].kind == elemStars &&
				g.elems[k+2].kind == elemLit && g.elems[k+2].r == '/' {
				e.eps = k + 2
			}
		}
	}
	return g, nil
}

// parseClass parses "[...]" at the start of s and returns the class and the
// number of bytes it spans.
func parseClass(s string) (*runeClass, int, error) {
	c := &runeClass{}
	i := 1
	if i < len(s) && (s[i] == '!' || s[i] == '^') {
		c.neg = true
		i++
	}
	first := true
	for {
		if i >= len(s) {
			return nil, 0, fmt.Errorf("%w: unterminated character class", ErrBadPattern)
		}
		if s[i] == ']' && !first {
			return c, i + 1, nil
		}
		first = false
		lo, w := utf8.DecodeRuneInString(s[i:])
		i += w
		hi := lo
		if i+1 < len(s) && s[i] == '-' && s[i+1] != ']' {
			hi, w = utf8.DecodeRuneInString(s[i+1:])
			i += 1 + w
			if hi < lo {
				return nil, 0, fmt.Errorf("%w: bad range %q-%q in character class", ErrBadPattern, lo, hi)
			}
		}
		if lo <= '/' && '/' <= hi {
			return nil, 0, fmt.Errorf("%w: '/' cannot be in a character class", ErrBadPattern)
		}
		c.ranges = append(c.ranges, [2]rune{lo, hi})
	}
}

func (g *glob) closure(s *stateSet) {
	n := len(g.elems)
	for w := range s {
		for word := s[w]; word != 0; word &= word - 1 {
			k := w<<6 | bits.TrailingZeros64(word)
			if k >= n {
				return
			}
			if e := g.elems[k].eps; e > 0 {
				s.set(e)
				if e>>6 == w {
					word |= 1 << (e & 63) // visit it in this pass too
				}
			}
		}
	}
}

func (g *glob) match(p string) bool {
	if !strings.HasSuffix(p, g.suffix) {
		return false
	}
	n := len(g.elems)
	var cur stateSet
	cur.set(0)
	g.closure(&cur)
	for i := 0; i < len(p); {
		r, w := utf8.DecodeRuneInString(p[i:])
		i += w
		var next stateSet
		for wi := range cur {
			for word := cur[wi]; word != 0; word &= word - 1 {
				k := wi<<6 | bits.TrailingZeros64(word)
				if k >= n {
					break
				}
				e := &g.elems[k]
				switch e.kind {
				case elemLit:
					if r == e.r {
						next.set(k + 1)
					}
				case elemOne:
					if r != '/' {
						next.set(k + 1)
					}
				case elemClass:
					if r != '/' && e.class.match(r) {
						next.set(k + 1)
					}
				case elemStar:
					if r != '/' {
						next.set(k)
					}
				case elemStars:
					next.set(k)
				}
			}
		}
		if next.empty() {
			return false
		}
		g.closure(&next)
		cur = next
	}
	return cur.has(n)
}
