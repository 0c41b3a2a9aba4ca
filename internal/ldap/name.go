package ldap

import (
	"unicode"
	"unicode/utf8"
)

// Bind names come in three shapes: a DN (CN=x,OU=y,DC=example,DC=com), a
// down-level logon name (EXAMPLE\user) and a user principal name
// (user@example.com). A name whose first "=" is preceded by a valid
// attribute type is a DN; otherwise a backslash makes it a down-level name
// and an "@" a principal name.
//
// The functions below are generic over the name's representation so that
// the proxy can derive the routing domain straight from the bind name in
// the message buffer, without a string conversion, while Domain and User
// keep their string API.

// text is a bind name as a string or as bytes.
type text interface{ ~string | ~[]byte }

// Domain derives the routing domain of a bind name: `DOM\user` → "dom",
// `user@dom.example` → "dom.example", and for a DN the values of its DC
// (domainComponent) attributes in order, joined by dots:
// `CN=x,OU=y,DC=example,DC=com` → "example.com". Attribute names are matched
// case-insensitively, spaces around '=' and ',' are tolerated and escapes
// (`\,`, `\2C`) and quoted values are decoded. ASCII letters are
// lower-cased and trailing dots are dropped. It returns "" when the name
// names no domain.
//
// For a down-level or principal name already in lower case the result is
// part of name and Domain allocates nothing; AppendDomain never allocates
// when dst has room.
func Domain(name string) string {
	name = trimSpace(name)
	switch shape, i := shapeOf(name); shape {
	case shapeDN:
		var buf [128]byte
		return string(appendDNDomain(buf[:0], name))
	case shapeDownLevel:
		return lowerASCII(trimDomain(name[:i]))
	case shapePrincipal:
		return lowerASCII(trimDomain(name[i+1:]))
	}
	return ""
}

// AppendDomain appends the routing domain of the bind name to dst, exactly
// as Domain derives it, and returns the extended slice. It allocates only
// if dst lacks room for the domain (which is never longer than name) and
// does not retain name.
func AppendDomain(dst, name []byte) []byte { return appendDomain(dst, name) }

func appendDomain[S text](dst []byte, name S) []byte {
	name = trimSpace(name)
	switch shape, i := shapeOf(name); shape {
	case shapeDN:
		return appendDNDomain(dst, name)
	case shapeDownLevel:
		return appendLowerASCII(dst, trimDomain(name[:i]))
	case shapePrincipal:
		return appendLowerASCII(dst, trimDomain(name[i+1:]))
	}
	return dst
}

// trimDomain trims spaces, then trailing dots.
func trimDomain[S text](s S) S {
	s = trimSpace(s)
	n := len(s)
	for n > 0 && s[n-1] == '.' {
		n--
	}
	return s[:n]
}

// appendDNDomain appends the DC values of dn joined by dots, trimmed as by
// trimDomain and lower-cased.
func appendDNDomain[S text](dst []byte, dn S) []byte {
	start := len(dst)
	w := dnWalker[S]{dn: dn}
	for {
		typ, ok := w.next()
		if !ok {
			break
		}
		if !isDC(typ) {
			w.skipValue()
			continue
		}
		mark := len(dst)
		if mark > start {
			dst = append(dst, '.')
		}
		at := len(dst)
		if dst = w.appendValue(dst); len(dst) == at {
			dst = dst[:mark] // an empty value adds nothing, not even its dot
		}
	}
	d := trimDomain(dst[start:])
	n := copy(dst[start:], d)
	dst = dst[:start+n]
	lowerInPlace(dst[start:])
	return dst
}

// User returns the user part of a bind name for events: `DOM\user` → "user",
// `user@dom` → "user", for a DN the value of its first attribute
// (`CN=John Smith,DC=example,DC=com` → "John Smith"), otherwise the name
// itself. Surrounding spaces are removed; case is kept.
func User(name string) string { return userOf(name, -1) }

// eventUser is User of a bind name held in the message, clipped to
// maxUserLen octets at a UTF-8 boundary. It allocates the returned string
// (of at most maxUserLen octets, so a pending bind never pins the message).
func eventUser(name []byte) string { return userOf(name, maxUserLen) }

// userOf returns User(name), clipped to limit octets unless limit < 0.
func userOf[S text](name S, limit int) string {
	name = trimSpace(name)
	switch shape, i := shapeOf(name); shape {
	case shapeDN:
		w := dnWalker[S]{dn: name}
		if _, ok := w.next(); !ok {
			return ""
		}
		var buf [maxUserLen]byte
		return string(clipText(w.appendValue(buf[:0]), limit))
	case shapeDownLevel:
		name = trimSpace(name[i+1:])
	case shapePrincipal:
		name = trimSpace(name[:i])
	}
	return string(clipText(name, limit))
}

// clipUser bounds a user name for events, cutting at a UTF-8 boundary.
func clipUser(u string) string { return clipText(u, maxUserLen) }

// clipText cuts s to at most limit octets at a UTF-8 boundary; limit < 0 keeps
// it whole.
func clipText[S text](s S, limit int) S {
	if limit < 0 || len(s) <= limit {
		return s
	}
	i := limit
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

type nameShape uint8

const (
	shapePlain     nameShape = iota
	shapeDN                  // CN=x,DC=example,DC=com
	shapeDownLevel           // DOM\user; index of the backslash
	shapePrincipal           // user@example.com; index of the last '@'
)

func shapeOf[S text](name S) (nameShape, int) {
	if eq := indexByte(name, '='); eq > 0 && validType(trimSpace(name[:eq])) {
		return shapeDN, eq
	}
	if i := indexByte(name, '\\'); i >= 0 {
		return shapeDownLevel, i
	}
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '@' {
			return shapePrincipal, i
		}
	}
	return shapePlain, -1
}

func indexByte[S text](s S, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// validType reports whether s looks like an attribute type: a descriptor
// (cn, domainComponent) or a numeric OID, possibly with the RFC 1779 "OID."
// prefix.
func validType[S text](s S) bool {
	if len(s) == 0 {
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

const domainComponentOID = "0.9.2342.19200300.100.1.25"

// isDC reports whether typ (a validType, so ASCII) names domainComponent.
func isDC[S text](typ S) bool {
	return equalFoldASCII(typ, "dc") || equalFoldASCII(typ, "domainComponent") ||
		equalFoldASCII(typ, domainComponentOID) || equalFoldASCII(typ, "OID."+domainComponentOID)
}

// equalFoldASCII compares s and t ignoring the case of ASCII letters. For
// ASCII input it agrees with strings.EqualFold.
func equalFoldASCII[S text](s S, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lowerByte(s[i]) != lowerByte(t[i]) {
			return false
		}
	}
	return true
}

// dnWalker steps through the attribute types and values of a DN in order
// ('+' joins values within a relative distinguished name, ',' or ';'
// separates them). It stops at the end or at the first malformed part.
type dnWalker[S text] struct {
	dn    S
	i     int // where the next type or the current value starts
	round int
	done  bool
}

// next returns the next attribute type; the caller then takes its value
// with appendValue or skipValue. ok is false at the end.
func (w *dnWalker[S]) next() (typ S, ok bool) {
	// Each round consumes at least the '=' and a separator, so len(dn)+1
	// rounds are enough.
	if w.done || w.i >= len(w.dn) || w.round > len(w.dn) {
		w.done = true
		return typ, false
	}
	w.round++
	eq := indexByte(w.dn[w.i:], '=')
	if eq < 0 {
		w.done = true
		return typ, false
	}
	typ = trimSpace(w.dn[w.i : w.i+eq])
	if !validType(typ) {
		w.done = true
		return typ, false
	}
	w.i = skipSpaces(w.dn, w.i+eq+1)
	return typ, true
}

// appendValue appends the decoded value of the current attribute to dst.
func (w *dnWalker[S]) appendValue(dst []byte) []byte {
	dst, end, sep := scanDNValue(dst, w.dn, w.i, true)
	w.advance(end, sep)
	return dst
}

// skipValue passes over the value of the current attribute.
func (w *dnWalker[S]) skipValue() {
	_, end, sep := scanDNValue(nil, w.dn, w.i, false)
	w.advance(end, sep)
}

func (w *dnWalker[S]) advance(end int, sep byte) {
	if sep == 0 {
		w.done = true
		return
	}
	w.i = end + 1
}

// scanDNValue decodes the attribute value starting at dn[i], appending it
// to dst when keep is set, and returns dst, the index where the value ended
// and the separator found there (0 at the end). Unescaped trailing spaces
// are not part of the value.
func scanDNValue[S text](dst []byte, dn S, i int, keep bool) ([]byte, int, byte) {
	put := func(c byte) {
		if keep {
			dst = append(dst, c)
		}
	}
	if i < len(dn) && dn[i] == '"' { // RFC 1779 quoted value
		for i++; i < len(dn); i++ {
			c := dn[i]
			if c == '\\' && i+1 < len(dn) {
				i++
				put(dn[i])
				continue
			}
			if c == '"' {
				i++
				break
			}
			put(c)
		}
		for i < len(dn) && !isDNSeparator(dn[i]) {
			i++
		}
		if i == len(dn) {
			return dst, i, 0
		}
		return dst, i, dn[i]
	}
	end := len(dst) // length of dst without trailing unescaped spaces
	for i < len(dn) {
		c := dn[i]
		switch {
		case isDNSeparator(c):
			return dst[:end], i, c
		case c == '\\':
			if i+2 < len(dn) && isHex(dn[i+1]) && isHex(dn[i+2]) {
				put(unhex(dn[i+1])<<4 | unhex(dn[i+2]))
				i += 3
			} else if i+1 < len(dn) {
				put(dn[i+1])
				i += 2
			} else {
				i++ // a lone trailing backslash is dropped
			}
			end = len(dst)
		default:
			put(c)
			i++
			if c != ' ' {
				end = len(dst)
			}
		}
	}
	return dst[:end], i, 0
}

func isDNSeparator(c byte) bool { return c == ',' || c == ';' || c == '+' }

func skipSpaces[S text](s S, i int) int {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	return i
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// trimSpace removes leading and trailing white space as defined by
// unicode.IsSpace, like strings.TrimSpace and bytes.TrimSpace.
func trimSpace[S text](s S) S {
	start := 0
	for start < len(s) {
		if c := s[start]; c < utf8.RuneSelf {
			if !isASCIISpace(c) {
				break
			}
			start++
			continue
		}
		r, n := firstRune(s[start:])
		if !unicode.IsSpace(r) {
			break
		}
		start += n
	}
	end := len(s)
	for end > start {
		if c := s[end-1]; c < utf8.RuneSelf {
			if !isASCIISpace(c) {
				break
			}
			end--
			continue
		}
		r, n := lastRune(s[start:end])
		if !unicode.IsSpace(r) {
			break
		}
		end -= n
	}
	return s[start:end]
}

func isASCIISpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// firstRune decodes the first rune of s like utf8.DecodeRune.
func firstRune[S text](s S) (rune, int) {
	var b [utf8.UTFMax]byte
	n := 0
	for ; n < len(b) && n < len(s); n++ {
		b[n] = s[n]
	}
	return utf8.DecodeRune(b[:n])
}

// lastRune decodes the last rune of s like utf8.DecodeLastRune, which looks
// back no further than utf8.UTFMax octets.
func lastRune[S text](s S) (rune, int) {
	var b [utf8.UTFMax]byte
	n := min(len(s), len(b))
	for k := range n {
		b[k] = s[len(s)-n+k]
	}
	return utf8.DecodeLastRune(b[:n])
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		c += 'a' - 'A'
	}
	return c
}

// lowerASCII lower-cases ASCII letters only, leaving other bytes alone so
// that no Unicode folding can turn a foreign name into a configured one.
// It allocates only if s has an upper-case letter.
func lowerASCII(s string) string {
	i := 0
	for i < len(s) && !('A' <= s[i] && s[i] <= 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	lowerInPlace(b[i:])
	return string(b)
}

func lowerInPlace(b []byte) {
	for i, c := range b {
		b[i] = lowerByte(c)
	}
}

func appendLowerASCII[S text](dst []byte, s S) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, lowerByte(s[i]))
	}
	return dst
}
