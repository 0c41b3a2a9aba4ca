package ldap

import "strings"

// This file keeps the first, allocating implementation of Domain and User
// as the reference oracle for the allocation-free one in name.go
// (FuzzAppendDomain and TestDomainMatchesReference compare them). It is
// not used by the package.

// refDomain derives the routing domain of a bind name: `DOM\user` → "dom",
// `user@dom.example` → "dom.example", and for a DN the values of its DC
// (domainComponent) attributes in order, joined by dots:
// `CN=x,OU=y,DC=example,DC=com` → "example.com". Attribute names are matched
// case-insensitively, spaces around '=' and ',' are tolerated and escapes
// (`\,`, `\2C`) and quoted values are decoded. ASCII letters are
// lower-cased and trailing dots are dropped. It returns "" when the name
// names no domain.
func refDomain(name string) string {
	name = strings.TrimSpace(name)
	switch shape, i := refShapeOf(name); shape {
	case refShapeDN:
		return refDnDomain(name)
	case refShapeDownLevel:
		return refNormDomain(name[:i])
	case refShapePrincipal:
		return refNormDomain(name[i+1:])
	}
	return ""
}

// refNormDomain trims spaces and trailing dots and lower-cases ASCII letters.
func refNormDomain(s string) string {
	return refLowerASCII(strings.TrimRight(strings.TrimSpace(s), "."))
}

// refUser returns the user part of a bind name for events: `DOM\user` → "user",
// `user@dom` → "user", for a DN the value of its first attribute
// (`CN=John Smith,DC=example,DC=com` → "John Smith"), otherwise the name
// itself. Surrounding spaces are removed; case is kept.
func refUser(name string) string {
	name = strings.TrimSpace(name)
	switch shape, i := refShapeOf(name); shape {
	case refShapeDN:
		var user string
		refWalkDN(name, func(_ int, _, val string) bool {
			user = val
			return false
		})
		return user
	case refShapeDownLevel:
		return strings.TrimSpace(name[i+1:])
	case refShapePrincipal:
		return strings.TrimSpace(name[:i])
	}
	return name
}

type refNameShape uint8

const (
	refShapePlain     refNameShape = iota
	refShapeDN                     // CN=x,DC=example,DC=com
	refShapeDownLevel              // DOM\user; index of the backslash
	refShapePrincipal              // user@example.com; index of the last '@'
)

func refShapeOf(name string) (refNameShape, int) {
	if eq := strings.IndexByte(name, '='); eq > 0 && refValidType(strings.TrimSpace(name[:eq])) {
		return refShapeDN, eq
	}
	if i := strings.IndexByte(name, '\\'); i >= 0 {
		return refShapeDownLevel, i
	}
	if i := strings.LastIndexByte(name, '@'); i >= 0 {
		return refShapePrincipal, i
	}
	return refShapePlain, -1
}

// refValidType reports whether s looks like an attribute type: a descriptor
// (cn, domainComponent) or a numeric OID, possibly with the RFC 1779 "OID."
// prefix.
func refValidType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

const refDomainComponentOID = "0.9.2342.19200300.100.1.25"

func refIsDC(typ string) bool {
	return strings.EqualFold(typ, "dc") || strings.EqualFold(typ, "domainComponent") ||
		typ == refDomainComponentOID || strings.EqualFold(typ, "OID."+refDomainComponentOID)
}

func refDnDomain(dn string) string {
	var b strings.Builder
	refWalkDN(dn, func(_ int, typ, val string) bool {
		if refIsDC(typ) && val != "" {
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(val)
		}
		return true
	})
	return refNormDomain(b.String())
}

// refWalkDN calls fn with each attribute type and decoded value of dn in order
// (rdn counts the relative distinguished names; '+' joins values within
// one). It stops when fn returns false or at the first malformed part.
func refWalkDN(dn string, fn func(rdn int, typ, val string) bool) {
	rdn := 0
	// Each round consumes at least the '=' and a separator, so len(dn)
	// rounds are enough.
	for i, round := 0, 0; i < len(dn) && round <= len(dn); round++ {
		eq := strings.IndexByte(dn[i:], '=')
		if eq < 0 {
			return
		}
		typ := strings.TrimSpace(dn[i : i+eq])
		if !refValidType(typ) {
			return
		}
		i = refSkipSpaces(dn, i+eq+1)
		val, end, sep := refDnValue(dn, i)
		if !fn(rdn, typ, val) || sep == 0 {
			return
		}
		if sep != '+' {
			rdn++
		}
		i = end + 1
	}
}

// refDnValue decodes the attribute value starting at dn[i] and returns it, the
// index where it ended and the separator found there (0 at the end).
func refDnValue(dn string, i int) (string, int, byte) {
	var b []byte
	if i < len(dn) && dn[i] == '"' { // RFC 1779 quoted value
		for i++; i < len(dn); i++ {
			c := dn[i]
			if c == '\\' && i+1 < len(dn) {
				i++
				b = append(b, dn[i])
				continue
			}
			if c == '"' {
				i++
				break
			}
			b = append(b, c)
		}
		for i < len(dn) && !refIsDNSeparator(dn[i]) {
			i++
		}
		if i == len(dn) {
			return string(b), i, 0
		}
		return string(b), i, dn[i]
	}
	keep := 0 // length of b without trailing unescaped spaces
	for i < len(dn) {
		c := dn[i]
		switch {
		case refIsDNSeparator(c):
			return string(b[:keep]), i, c
		case c == '\\':
			if i+2 < len(dn) && refIsHex(dn[i+1]) && refIsHex(dn[i+2]) {
				b = append(b, refUnhex(dn[i+1])<<4|refUnhex(dn[i+2]))
				i += 3
			} else if i+1 < len(dn) {
				b = append(b, dn[i+1])
				i += 2
			} else {
				i++ // a lone trailing backslash is dropped
			}
			keep = len(b)
		default:
			b = append(b, c)
			i++
			if c != ' ' {
				keep = len(b)
			}
		}
	}
	return string(b[:keep]), i, 0
}

func refIsDNSeparator(c byte) bool { return c == ',' || c == ';' || c == '+' }

func refSkipSpaces(s string, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

func refIsHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func refUnhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// refLowerASCII lower-cases ASCII letters only, leaving other bytes alone so
// that no Unicode folding can turn a foreign name into a configured one.
func refLowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if 'A' <= b[i] && b[i] <= 'Z' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}
