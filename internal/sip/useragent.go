package sip

import (
	"errors"
	"fmt"
	"strings"
)

// DefaultScannerAgents are User-Agent substrings of SIP scanning and
// brute-force tools, matched case-insensitively. The list is the overlap
// of what Kamailio's default configuration
// (friendly|scanner|sipcli|sipvicious|VaxSIPUserAgent|pplsip), iptables
// string-match block lists (paulseward/sip-hardening) and honeypot reports
// name, restricted to strings that no ordinary phone, PBX or SDK sends:
//
//   - friendly-scanner, friendly-request: SIPVicious svmap/svwar/svcrack
//     (older and newer releases); sipvicious also appears in From.
//   - sipcli: the sipcli dialer used for toll-fraud INVITEs.
//   - sip-scan, sipscan, sipptk, pplsip: sippts (Pepelux) and similar.
//   - iwar, sundayddr, siparmyknife, sivus: other scanners and fuzzers.
//   - vaxsipuseragent, vaxipuseragent: VaxVoIP SDK strings seen almost
//     only in attack traffic (in Kamailio's default list).
//
// Deliberately left out, because legitimate equipment or administrators
// send them: sipsak (a SIP monitoring and admin tool, used for health
// checks), Ozeki and PortSIP (commercial softphone/SDK vendors whose
// products register as real clients), Cisco-SIPGateway, Asterisk and
// FreePBX (spoofed by fraudsters but also real servers), and short or
// generic strings such as smap, scanner, "Test Agent", voip or sipv whose
// substring match would hit real products. A UA is chosen by the sender,
// so this list only catches the lazy; it is one signal among several.
var DefaultScannerAgents = []string{
	"friendly-scanner",
	"friendly-request",
	"sipvicious",
	"sipcli",
	"sip-scan",
	"sipscan",
	"sipptk",
	"pplsip",
	"iwar",
	"sundayddr",
	"siparmyknife",
	"sivus",
	"vaxsipuseragent",
	"vaxipuseragent",
}

// Limits on UAMatcher patterns.
const (
	MaxUAPatternLen = 64
	MaxUAPatterns   = 1024
)

// ErrUAPattern: a User-Agent pattern is empty, too long, not printable
// ASCII, duplicated, or there are too many of them.
var ErrUAPattern = errors.New("sip: invalid User-Agent pattern")

// UAMatcher finds which of a fixed set of case-insensitive substring
// patterns occurs in a User-Agent value. It is immutable after
// NewUAMatcher and safe for concurrent use. The zero value matches
// nothing.
type UAMatcher struct {
	patterns []string // as configured, for Match's result
	lower    []string // ASCII lower-case
	// first marks the bytes (either case) that start some pattern; it
	// keeps the common miss down to one byte-table lookup per byte of UA.
	first [256]bool
	// byFirst lists, for each lower-case first byte, the indices of the
	// patterns starting with it.
	byFirst [256][]uint16
}

// NewUAMatcher returns a matcher for patterns, each matched as an ASCII
// case-insensitive substring. A pattern must be 1-64 bytes of printable
// ASCII (0x20-0x7e); patterns equal ignoring case are rejected as
// duplicates; at most MaxUAPatterns are allowed. All problems are reported
// at once, each wrapping ErrUAPattern.
func NewUAMatcher(patterns []string) (*UAMatcher, error) {
	var errs []error
	if len(patterns) > MaxUAPatterns {
		errs = append(errs, fmt.Errorf("%w: %d patterns, at most %d", ErrUAPattern, len(patterns), MaxUAPatterns))
	}
	m := &UAMatcher{}
	seen := make(map[string]int, len(patterns))
	for i, p := range patterns {
		if msg := checkUAPattern(p); msg != "" {
			errs = append(errs, fmt.Errorf("%w: pattern %d %q: %s", ErrUAPattern, i, p, msg))
			continue
		}
		l := strings.ToLower(p) // ASCII only, checked above
		if j, dup := seen[l]; dup {
			errs = append(errs, fmt.Errorf("%w: pattern %d %q duplicates pattern %d", ErrUAPattern, i, p, j))
			continue
		}
		seen[l] = i
		if len(errs) > 0 {
			continue
		}
		m.byFirst[l[0]] = append(m.byFirst[l[0]], uint16(len(m.lower)))
		m.first[l[0]], m.first[upperASCII(l[0])] = true, true
		m.patterns = append(m.patterns, p)
		m.lower = append(m.lower, l)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return m, nil
}

func checkUAPattern(p string) string {
	if p == "" {
		return "empty"
	}
	if len(p) > MaxUAPatternLen {
		return fmt.Sprintf("%d bytes, at most %d", len(p), MaxUAPatternLen)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c > 0x7e {
			return fmt.Sprintf("byte %#x at %d is not printable ASCII", c, i)
		}
	}
	return ""
}

// Patterns returns the configured patterns in order.
func (m *UAMatcher) Patterns() []string { return append([]string(nil), m.patterns...) }

// Match reports whether a pattern occurs in ua, ignoring ASCII case, and
// returns it as configured. When several occur, the one starting earliest
// in ua wins, then the one listed first. Match does not allocate; its cost
// is about one table lookup per byte of ua plus a comparison per pattern
// whose first byte matches.
func (m *UAMatcher) Match(ua []byte) (pattern string, ok bool) {
	if m == nil || len(m.lower) == 0 {
		return "", false
	}
	for i := 0; i < len(ua); i++ {
		if !m.first[ua[i]] {
			continue
		}
		for _, k := range m.byFirst[lowerASCII(ua[i])] {
			if hasPrefixFold(ua[i:], m.lower[k]) {
				return m.patterns[k], true
			}
		}
	}
	return "", false
}

func upperASCII(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasPrefixFold reports whether b starts with the lower-case string s,
// ignoring the ASCII case of b.
func hasPrefixFold(b []byte, s string) bool {
	if len(b) < len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerASCII(b[i]) != s[i] {
			return false
		}
	}
	return true
}
