package httpproxy

import (
	"encoding/base64"
	"net/netip"
	"strings"
)

// peerAddr parses an http.Request.RemoteAddr ("ip:port", "[ip]:port").
// It returns the zero Addr when RemoteAddr is not an address.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// trustedSet is the list of proxies whose forwarding headers are believed.
type trustedSet []netip.Prefix

func (t trustedSet) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr returns the address the request is attributed to: the peer,
// or, when the peer is a trusted proxy, the right-most X-Forwarded-For entry
// that is not itself a trusted proxy. An entry that is not an address stops
// the walk; the request is then attributed to the proxy that added it.
func (t trustedSet) clientAddr(peer netip.Addr, xff []string) netip.Addr {
	if len(t) == 0 || !t.contains(peer) {
		return peer
	}
	cur := peer
	for i := len(xff) - 1; i >= 0; i-- {
		v := xff[i]
		for v != "" {
			var entry string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				entry, v = v[j+1:], v[:j]
			} else {
				entry, v = v, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseXFFEntry(entry)
			if !ok {
				return cur
			}
			if !t.contains(a) {
				return a
			}
			cur = a
		}
	}
	return cur
}

// parseXFFEntry parses one X-Forwarded-For element: an address, optionally
// with a port or in brackets.
func parseXFFEntry(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// forwardedElement renders one RFC 7239 forwarded-element.
func forwardedElement(peer netip.Addr, proto, host string) string {
	return string(appendForwarded(make([]byte, 0, 64+len(host)), peer, proto, host))
}

// appendForwarded appends the forwarded-element of forwardedElement to b.
func appendForwarded(b []byte, peer netip.Addr, proto, host string) []byte {
	b = append(b, "for="...)
	switch {
	case !peer.IsValid():
		b = append(b, "unknown"...)
	case peer.Is6():
		b = append(b, `"[`...)
		b = peer.AppendTo(b)
		b = append(b, `]"`...)
	default:
		b = peer.AppendTo(b)
	}
	b = append(b, ";proto="...)
	b = append(b, proto...)
	if host != "" {
		b = append(b, ";host="...)
		b = appendTokenOrQuoted(b, host)
	}
	return b
}

func appendTokenOrQuoted(b []byte, s string) []byte {
	token := true
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			token = false
			break
		}
	}
	if token {
		return append(b, s...)
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// hostKey normalizes a Host header value for routing.
func hostKey(h string) string {
	if h == "" {
		return ""
	}
	if h[0] == '[' {
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[1:i]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h)
}

// maxUserLen bounds the user name put into events.
const maxUserLen = 128

// authUser extracts the user name an Authorization header claims: the user
// of Basic credentials or the username parameter of Digest. It is only a
// claim (the gateway does not verify it); it attributes events.
func authUser(h string) string {
	scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Basic"):
		if len(rest) > 4*maxUserLen+64 {
			rest = rest[:(4*maxUserLen+64)/4*4]
		}
		dec, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		user, _, _ := strings.Cut(string(dec), ":")
		return clipUser(user)
	case strings.EqualFold(scheme, "Digest"):
		return clipUser(digestParam(rest, "username"))
	}
	return ""
}

func clipUser(u string) string {
	if len(u) > maxUserLen {
		u = u[:maxUserLen]
	}
	return u
}

// digestParam returns the value of parameter name in a Digest credentials
// list (auth-param *( "," auth-param ), values token or quoted-string).
func digestParam(s, name string) string {
	for s != "" {
		s = strings.TrimLeft(s, " \t,")
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return ""
		}
		key := strings.TrimSpace(s[:eq])
		s = strings.TrimLeft(s[eq+1:], " \t")
		var val string
		if strings.HasPrefix(s, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				if b.Len() < maxUserLen {
					b.WriteByte(s[i])
				}
			}
			val = b.String()
			if i < len(s) {
				i++
			}
			s = s[i:]
		} else {
			end := strings.IndexByte(s, ',')
			if end < 0 {
				end = len(s)
			}
			val = strings.TrimSpace(s[:end])
			s = s[end:]
		}
		if strings.EqualFold(key, name) {
			return val
		}
	}
	return ""
}
