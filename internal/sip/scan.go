package sip

import "bytes"

// Lexical helpers. They return "" or a short message saying what is wrong;
// the caller wraps it in a *ParseError with the header's position, so the
// success path allocates nothing.

// tokenChars: RFC 3261 25.1 token = 1*(alphanum / "-" / "." / "!" / "%" /
// "*" / "_" / "+" / "`" / "'" / "~").
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "-.!%*_+`'~" {
		t[c] = true
	}
	return t
}()

func isToken(c byte) bool { return tokenChars[c] }

func isTokenBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// eqFold reports whether b equals the lower-case ASCII string s, ignoring
// the case of letters in b.
func eqFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func skipLWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
		i++
	}
	return i
}

func trimLWS(b []byte) []byte {
	i := skipLWS(b, 0)
	j := len(b)
	for j > i && (b[j-1] == ' ' || b[j-1] == '\t') {
		j--
	}
	return b[i:j]
}

// scalar reads the decimal number at the start of b (leading zeros allowed)
// and returns it with the index after the digits. ok is false without
// digits or when the value exceeds maxScalar.
func scalar(b []byte) (n, i int, ok bool) {
	for i < len(b) && isDigit(b[i]) {
		n = n*10 + int(b[i]-'0')
		if n > maxScalar {
			return 0, i, false
		}
		i++
	}
	return n, i, i > 0
}

// skipQuoted returns the index after the quoted-string that starts at b[i]
// (a '"'), honouring backslash escapes; ok is false when it is unterminated.
func skipQuoted(b []byte, i int) (int, bool) {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1, true
		}
	}
	return len(b), false
}

// firstValue returns the trimmed part of a header value before the first
// comma outside quoted strings.
func firstValue(v []byte) ([]byte, bool) {
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			j, ok := skipQuoted(v, i)
			if !ok {
				return nil, false
			}
			i = j - 1
		case ',':
			return trimLWS(v[:i]), true
		}
	}
	return v, true
}

// parseNameAddr parses a From or To value: ( name-addr / addr-spec ) *(
// SEMI param ), RFC 3261 20.20. In the addr-spec form the URI ends at the
// first ';' or whitespace; everything after it are header parameters.
func parseNameAddr(v []byte, a *Addr) string {
	if len(v) == 0 {
		return "empty value"
	}
	lt := -1
	if v[0] == '"' {
		j, ok := skipQuoted(v, 0)
		if !ok {
			return "unterminated quoted string"
		}
		j = skipLWS(v, j)
		if j == len(v) || v[j] != '<' {
			return "display name not followed by <URI>"
		}
		lt = j
	} else if j := bytes.IndexByte(v, '<'); j >= 0 {
		// Unquoted display name: tokens separated by whitespace.
		for _, c := range v[:j] {
			if !isToken(c) && c != ' ' && c != '\t' {
				return "bad character in display name"
			}
		}
		lt = j
	}
	var uri, rest []byte
	if lt >= 0 {
		gt := bytes.IndexByte(v[lt+1:], '>')
		if gt < 0 {
			return "< without >"
		}
		uri, rest = v[lt+1:lt+1+gt], v[lt+2+gt:]
	} else {
		end := bytes.IndexAny(v, "; \t")
		if end < 0 {
			end = len(v)
		}
		uri, rest = v[:end], v[end:]
	}
	user, host, msg := parseURI(uri)
	if msg != "" {
		return msg
	}
	a.User, a.Host = user, host
	tag, msg := params(rest, "tag")
	if msg != "" {
		return msg
	}
	a.Tag = tag
	return ""
}

// params parses *( LWS ";" LWS name [ LWS "=" LWS gen-value ] ) and
// returns the token value of the parameter called want (lower case).
func params(b []byte, want string) (tag []byte, msg string) {
	i := skipLWS(b, 0)
	for i < len(b) {
		if b[i] != ';' {
			return nil, "unexpected character after address"
		}
		i = skipLWS(b, i+1)
		n := i
		for i < len(b) && isToken(b[i]) {
			i++
		}
		name := b[n:i]
		if len(name) == 0 {
			return nil, "empty parameter name"
		}
		i = skipLWS(b, i)
		var val []byte
		hasVal := i < len(b) && b[i] == '='
		if hasVal {
			i = skipLWS(b, i+1)
			s := i
			if i < len(b) && b[i] == '"' {
				j, ok := skipQuoted(b, i)
				if !ok {
					return nil, "unterminated quoted parameter value"
				}
				i = j
			} else {
				for i < len(b) && (isToken(b[i]) || b[i] == '[' || b[i] == ']' || b[i] == ':') {
					i++
				}
			}
			val = b[s:i]
			if len(val) == 0 {
				return nil, "empty parameter value"
			}
			i = skipLWS(b, i)
		}
		if eqFold(name, want) {
			if tag != nil {
				return nil, "second " + want + " parameter"
			}
			if !hasVal || !isTokenBytes(val) {
				return nil, want + " is not a token"
			}
			tag = val
		}
	}
	return tag, ""
}

// checkVia checks one via-parm (RFC 3261 20.42): sent-protocol LWS sent-by
// *( SEMI via-params ), with LWS allowed around the slashes.
func checkVia(v []byte) string {
	i := 0
	for part := range 3 {
		if part > 0 {
			i = skipLWS(v, i)
			if i == len(v) || v[i] != '/' {
				return "bad sent-protocol"
			}
			i = skipLWS(v, i+1)
		}
		s := i
		for i < len(v) && isToken(v[i]) {
			i++
		}
		if i == s {
			return "bad sent-protocol"
		}
	}
	if !eqFold(v[:min(3, len(v))], "sip") {
		return "protocol is not SIP"
	}
	j := skipLWS(v, i)
	if j == i || j == len(v) {
		return "no sent-by"
	}
	// sent-by ends at ';' or whitespace; sipURI checks host and port.
	end := j
	for end < len(v) && v[end] != ';' && v[end] != ' ' && v[end] != '\t' {
		end++
	}
	if user, _, msg := sipURI(v[j:end]); msg != "" || user != nil {
		return "bad sent-by"
	}
	if _, msg := params(v[end:], ""); msg != "" {
		return msg
	}
	return ""
}

// parseURI checks a URI's characters and scheme and returns the user and
// host of sip:, sips: and tel: URIs. Other schemes are accepted with nil
// user and host.
func parseURI(u []byte) (user, host []byte, msg string) {
	colon := -1
	for i, c := range u {
		if c <= ' ' || c >= 0x7f || c == '"' || c == '<' || c == '>' {
			return nil, nil, "bad character in URI"
		}
		if c == ':' && colon < 0 {
			colon = i
		}
	}
	if colon <= 0 || !isAlpha(u[0]) {
		return nil, nil, "URI without scheme"
	}
	for _, c := range u[1:colon] {
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return nil, nil, "bad URI scheme"
		}
	}
	scheme, rest := u[:colon], u[colon+1:]
	switch {
	case eqFold(scheme, "sip") || eqFold(scheme, "sips"):
		return sipURI(rest)
	case eqFold(scheme, "tel"):
		if end := bytes.IndexByte(rest, ';'); end >= 0 {
			rest = rest[:end]
		}
		if len(rest) == 0 {
			return nil, nil, "tel: URI without number"
		}
		return rest, nil, ""
	}
	if len(rest) == 0 {
		return nil, nil, "empty URI"
	}
	return nil, nil, ""
}

// sipURI parses [ userinfo "@" ] hostport [ ";" params ] [ "?" headers ]
// (RFC 3261 19.1.1) far enough to return user and host.
func sipURI(r []byte) (user, host []byte, msg string) {
	if at := bytes.IndexByte(r, '@'); at >= 0 {
		user = r[:at]
		if c := bytes.IndexByte(user, ':'); c >= 0 {
			user = user[:c] // drop the password
		}
		if len(user) == 0 {
			return nil, nil, "empty user in SIP URI"
		}
		r = r[at+1:]
	}
	i := 0
	if len(r) > 0 && r[0] == '[' {
		end := bytes.IndexByte(r, ']')
		if end < 2 {
			return nil, nil, "bad IPv6 reference in SIP URI"
		}
		host = r[1:end]
		for _, c := range host {
			if !isDigit(c) && !('a' <= c|0x20 && c|0x20 <= 'f') && c != ':' && c != '.' {
				return nil, nil, "bad IPv6 reference in SIP URI"
			}
		}
		i = end + 1
	} else {
		for i < len(r) && (isAlpha(r[i]) || isDigit(r[i]) || r[i] == '-' || r[i] == '.' || r[i] == '_') {
			i++
		}
		host = r[:i]
		if len(host) == 0 {
			return nil, nil, "SIP URI without host"
		}
	}
	if i < len(r) && r[i] == ':' {
		i++
		p, j := 0, i
		for j < len(r) && isDigit(r[j]) && j-i < 5 {
			p = p*10 + int(r[j]-'0')
			j++
		}
		if j == i || p > 65535 {
			return nil, nil, "bad port in SIP URI"
		}
		i = j
	}
	if i < len(r) && r[i] != ';' && r[i] != '?' {
		return nil, nil, "bad character after host in SIP URI"
	}
	return user, host, ""
}

// digestUser returns the username parameter of a Digest credentials value
// (RFC 3261 25.1 credentials); other schemes give nil.
func digestUser(v []byte) (user []byte, msg string) {
	i := 0
	for i < len(v) && isToken(v[i]) {
		i++
	}
	if i == 0 {
		return nil, "no scheme"
	}
	if !eqFold(v[:i], "digest") {
		return nil, ""
	}
	if i < len(v) && v[i] != ' ' && v[i] != '\t' {
		return nil, "bad scheme"
	}
	i = skipLWS(v, i)
	for first := true; i < len(v); first = false {
		if !first {
			if v[i] != ',' {
				return nil, "parameters not separated by commas"
			}
			i = skipLWS(v, i+1)
		}
		n := i
		for i < len(v) && isToken(v[i]) {
			i++
		}
		name := v[n:i]
		i = skipLWS(v, i)
		if len(name) == 0 || i == len(v) || v[i] != '=' {
			return nil, "bad parameter"
		}
		i = skipLWS(v, i+1)
		var val []byte
		if i < len(v) && v[i] == '"' {
			j, ok := skipQuoted(v, i)
			if !ok {
				return nil, "unterminated quoted string"
			}
			val, i = v[i+1:j-1], j
		} else {
			s := i
			for i < len(v) && isToken(v[i]) {
				i++
			}
			val = v[s:i]
			if len(val) == 0 {
				return nil, "empty parameter value"
			}
		}
		i = skipLWS(v, i)
		if eqFold(name, "username") {
			if user != nil {
				return nil, "second username"
			}
			user = val
		}
	}
	if user == nil {
		return nil, "Digest without username"
	}
	return user, ""
}
