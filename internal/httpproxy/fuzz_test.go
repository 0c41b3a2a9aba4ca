package httpproxy

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"
)

// FuzzNormalize checks that NormalizePath never panics, that its result is
// a fixed point in normal form, and, differentially, that it agrees with
// url.PathUnescape followed by path.Clean.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"/", "/login.php", "//login.php", "/./login.php", "/a/../login.php",
		"/%6cogin.php", "/a/b/..", "/%2e%2e/", "/100%25", "/%2525", "/a%2Fb",
		"/a\\b", "/a%00", "/a%", "/caf%C3%A9", "/a//b/./c/../d/", "*", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, err := NormalizePath(p)
		if err != nil {
			if n != "" {
				t.Fatalf("error %v with result %q", err, n)
			}
			return
		}
		if n == "" || n[0] != '/' {
			t.Fatalf("NormalizePath(%q) = %q: not absolute", p, n)
		}
		again, err := NormalizePath(n)
		if err != nil || again != n {
			t.Fatalf("not idempotent: %q → %q → %q, %v", p, n, again, err)
		}
		if strings.Contains(n, "//") || strings.Contains(n, "/./") || strings.Contains(n, "/../") ||
			strings.HasSuffix(n, "/.") || strings.HasSuffix(n, "/..") {
			t.Fatalf("NormalizePath(%q) = %q: not normal", p, n)
		}
		dec, err := url.PathUnescape(p)
		if err != nil {
			t.Fatalf("NormalizePath accepted %q that url.PathUnescape refuses: %v", p, err)
		}
		if got, want := path.Clean(strings.ReplaceAll(n, "%25", "%")), path.Clean(dec); got != want {
			t.Fatalf("NormalizePath(%q) = %q; cleaned %q, want %q", p, n, got, want)
		}
	})
}

// FuzzDecide checks that Decide never panics and that a path denied by an
// exact rule is denied in every equivalent spelling.
func FuzzDecide(f *testing.F) {
	f.Add("GET", "/login.php", uint8(0), uint16(0))
	f.Add("POST", "/app/xml_cdr/xml_cdr_import.php", uint8(1), uint16(3))
	f.Add("GET", "/app/provision/a.cfg", uint8(2), uint16(7))
	f.Add("HEAD", "/a/b/c/", uint8(3), uint16(1))
	f.Add("GET", "/100%25/x", uint8(4), uint16(2))
	f.Add("OPTIONS", "*", uint8(5), uint16(0))
	f.Add("GET", "/caf%C3%A9/%2e%2e/x", uint8(6), uint16(9))
	base := benchRules(f)
	f.Fuzz(func(t *testing.T, method, p string, variant uint8, pos uint16) {
		src := netip.AddrFrom4([4]byte{10, 20, variant, byte(pos)})
		base.Decide(method, p, src)
		n, err := NormalizePath(p)
		if err != nil {
			if allow, _ := base.Decide(method, p, src); allow && p != "*" {
				t.Fatalf("bad path %q allowed", p)
			}
			return
		}
		r, err := CompileRules(RulesSpec{Default: "allow", Deny: []RuleSpec{{Pattern: "= " + n}}})
		if err != nil {
			t.Fatalf("normal path %q is no valid pattern: %v", n, err)
		}
		for _, s := range spellings(n, int(variant), int(pos)) {
			if allow, why := r.Decide(method, s, src); allow {
				t.Fatalf("%q (spelling of %q from %q) allowed: %s", s, n, p, why)
			}
		}
	})
}

// spellings returns other spellings of the normal path n that a backend
// resolves to the same resource.
func spellings(n string, variant, pos int) []string {
	out := []string{n, "/" + n, "/./" + n[1:], "/x/.." + n, "/x/y/../../" + n[1:]}
	// Percent-encode one byte (not '/', and not inside a "%25").
	if len(n) > 1 {
		i := 1 + pos%(len(n)-1)
		c := n[i]
		inEscape := c == '%' || (i >= 1 && n[i-1] == '%') || (i >= 2 && n[i-2] == '%')
		if c != '/' && !inEscape {
			out = append(out, n[:i]+fmt.Sprintf("%%%02X", c)+n[i+1:])
			out = append(out, n[:i]+fmt.Sprintf("%%%02x", c)+n[i+1:])
		}
	}
	// Double a slash, insert a dot segment at a slash.
	if j := strings.IndexByte(n[min(pos%len(n), len(n)-1):], '/'); j >= 0 {
		k := min(pos%len(n), len(n)-1) + j
		out = append(out, n[:k]+"/"+n[k:])
		if variant%2 == 0 {
			out = append(out, n[:k]+"/."+n[k:])
		} else {
			out = append(out, n[:k]+"/z/.."+n[k:])
		}
	}
	return out
}

// FuzzGlob compares the glob matcher with a regular expression built from
// the same pattern, over a small alphabet that makes collisions likely.
func FuzzGlob(f *testing.F) {
	f.Add([]byte{2, 0, 3, 3, 2, 1}, []byte{2, 0, 2, 1})
	f.Add([]byte{2, 3, 3, 2, 3, 3, 2}, []byte{2})
	f.Add([]byte{2, 3, 6, 0, 4, 5}, []byte{2, 0, 3, 0, 1})
	f.Add([]byte{2, 0, 3, 1, 3, 0, 3, 1}, []byte{2, 0, 1, 0, 0, 1, 2, 1})
	f.Fuzz(func(t *testing.T, pb, sb []byte) {
		if len(pb) > 64 || len(sb) > 256 {
			return
		}
		tokens := []string{"a", "b", "/", "*", "?", "[!a]", "."}
		var pat strings.Builder
		pat.WriteByte('/')
		for _, c := range pb {
			pat.WriteString(tokens[int(c)%len(tokens)])
		}
		var s strings.Builder
		s.WriteByte('/')
		for _, c := range sb {
			s.WriteByte("ab/."[int(c)%4])
		}
		p, name := pat.String(), s.String()
		g, err := compileGlob(p)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", p, err)
		}
		got := strings.HasPrefix(name, g.prefix) && g.match(name)
		re := regexp.MustCompile(globRegexp(p))
		if want := re.MatchString(name); got != want {
			t.Fatalf("glob %q on %q = %v, regexp %s says %v", p, name, got, re, want)
		}
	})
}

// globRegexp translates a glob (of FuzzGlob's alphabet) into an anchored
// regular expression with the documented semantics.
func globRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); {
		switch {
		case p[i] == '/' && strings.HasPrefix(p[i+1:], "**"):
			j := i + 1
			for j < len(p) && p[j] == '*' {
				j++
			}
			if j < len(p) && p[j] == '/' {
				b.WriteString("(?:/.*)?") // "/**/" also matches "/"
			} else {
				b.WriteString("/.*")
			}
			i = j
		case p[i] == '*':
			j := i
			for j < len(p) && p[j] == '*' {
				j++
			}
			if j-i >= 2 {
				b.WriteString(".*")
			} else {
				b.WriteString("[^/]*")
			}
			i = j
		case p[i] == '?':
			b.WriteString("[^/]")
			i++
		case strings.HasPrefix(p[i:], "[!a]"):
			b.WriteString("[^a/]")
			i += 4
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
			i++
		}
	}
	b.WriteString("$")
	return b.String()
}
