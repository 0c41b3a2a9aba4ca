package httpproxy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"/", "/", nil},
		{"/login.php", "/login.php", nil},
		{"/app/provision/", "/app/provision/", nil},
		{"//login.php", "/login.php", nil},
		{"///a///b//", "/a/b/", nil},
		{"/./login.php", "/login.php", nil},
		{"/a/../login.php", "/login.php", nil},
		{"/../../login.php", "/login.php", nil},
		{"/a/b/..", "/a/", nil},
		{"/a/b/.", "/a/b/", nil},
		{"/a/.", "/a/", nil},
		{"/..", "/", nil},
		{"/.", "/", nil},
		{"/...", "/...", nil},
		{"/a/..b/.c", "/a/..b/.c", nil},
		{"/%6cogin.php", "/login.php", nil},
		{"/%6Cogin%2Ephp", "/login.php", nil},
		{"/%2e%2e/login.php", "/login.php", nil},
		{"/a/%2E/b", "/a/b", nil},
		{"/caf%C3%A9", "/café", nil},
		{"/100%25", "/100%25", nil},
		{"/%2525", "/%2525", nil},
		{"/a%20b", "/a b", nil},
		{"/q%3Fx", "/q?x", nil},
		{"", "", errNotOriginForm},
		{"login.php", "", errNotOriginForm},
		{"*", "", errNotOriginForm},
		{"http://x/login.php", "", errNotOriginForm},
		{"/a%2Fb", "", errEncodedSlash},
		{"/a%2fb", "", errEncodedSlash},
		{"/a\\login.php", "", errBackslash},
		{"/a%5Clogin.php", "", errBackslash},
		{"/a%00b", "", errControl},
		{"/a\x00b", "", errControl},
		{"/a\nb", "", errControl},
		{"/a%0d%0ab", "", errControl},
		{"/a%7f", "", errControl},
		{"/a%", "", errBadEscape},
		{"/a%4", "", errBadEscape},
		{"/a%zz", "", errBadEscape},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := NormalizePath(tt.in)
			if !errors.Is(err, tt.err) || (err != nil && !errors.Is(err, ErrBadPath)) {
				t.Fatalf("NormalizePath(%q) error = %v, want %v", tt.in, err, tt.err)
			}
			if got != tt.want {
				t.Fatalf("NormalizePath(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if err == nil {
				again, err := NormalizePath(got)
				if err != nil || again != got {
					t.Fatalf("not idempotent: %q → %q, %v", got, again, err)
				}
			}
		})
	}
}

// cdrRules is the provisioning host example from the design: the web UI's
// entry pages denied, provisioning open, the CDR import URL only from the
// SIP nodes' network.
func cdrRules(t testing.TB, cdrNet string) *Rules {
	t.Helper()
	r, err := CompileRules(RulesSpec{
		Deny: []RuleSpec{
			{Pattern: "= /"},
			{Pattern: "= /login.php"},
			{Pattern: "= /index.php"},
		},
		Allow: []RuleSpec{
			{Pattern: "/app/provision/"},
			{Pattern: "= /app/xml_cdr/xml_cdr_import.php", Networks: []netip.Prefix{netip.MustParsePrefix(cdrNet)}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDecide(t *testing.T) {
	local := netip.MustParseAddr("127.0.0.1")
	sip := netip.MustParseAddr("10.20.3.4")
	mapped := netip.MustParseAddr("::ffff:10.20.3.4")
	cdr := cdrRules(t, "10.20.0.0/16")
	mixed, err := CompileRules(RulesSpec{
		Default: "allow",
		Deny: []RuleSpec{
			{Pattern: "/admin/", Networks: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
			{Pattern: "/secret/**/key.pem"},
			{Pattern: "/app/*.bak"},
			{Pattern: "/cfg/[!a-m]?.xml"},
			{Pattern: "= /upload", Methods: []string{"PUT", "DELETE"}},
			{Pattern: "= /page", Methods: []string{"GET"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	allowOnly, err := CompileRules(RulesSpec{
		Allow: []RuleSpec{{Pattern: "/api/", Methods: []string{"POST"}}, {Pattern: "/api/public/"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	denyDefault, err := CompileRules(RulesSpec{Default: "deny"})
	if err != nil {
		t.Fatal(err)
	}
	empty, err := CompileRules(RulesSpec{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		r       *Rules
		method  string
		path    string
		src     netip.Addr
		allow   bool
		whyPart string
	}{
		{"cdr root", cdr, "GET", "/", local, false, `deny "= /"`},
		{"cdr login", cdr, "GET", "/login.php", local, false, `deny "= /login.php"`},
		{"cdr login post", cdr, "POST", "/login.php", sip, false, `deny "= /login.php"`},
		{"cdr index", cdr, "GET", "/index.php", local, false, `deny "= /index.php"`},
		{"cdr login query-less", cdr, "GET", "/login.phpx", local, false, "default deny"},
		{"cdr provision", cdr, "GET", "/app/provision/00aabbccddee.cfg", local, true, `allow "/app/provision/"`},
		{"cdr provision dir", cdr, "GET", "/app/provision/", local, true, `allow "/app/provision/"`},
		{"cdr provision no slash", cdr, "GET", "/app/provision", local, false, "default deny"},
		{"cdr import from sip", cdr, "POST", "/app/xml_cdr/xml_cdr_import.php", sip, true, "allow"},
		{"cdr import from mapped sip", cdr, "POST", "/app/xml_cdr/xml_cdr_import.php", mapped, true, "allow"},
		{"cdr import from local", cdr, "POST", "/app/xml_cdr/xml_cdr_import.php", local, false, "reserved"},
		{"cdr import no source", cdr, "POST", "/app/xml_cdr/xml_cdr_import.php", netip.Addr{}, false, "reserved"},
		{"cdr other", cdr, "GET", "/app/other.php", local, false, "not allowed (default deny)"},
		{"bypass double slash", cdr, "GET", "//login.php", local, false, `deny "= /login.php"`},
		{"bypass dot", cdr, "GET", "/./login.php", local, false, `deny "= /login.php"`},
		{"bypass dotdot", cdr, "GET", "/a/../login.php", local, false, `deny "= /login.php"`},
		{"bypass escape", cdr, "GET", "/%6cogin.php", local, false, `deny "= /login.php"`},
		{"bypass escaped dots", cdr, "GET", "/app/provision/%2e%2e/%2e%2e/login.php", local, false, `deny "= /login.php"`},
		{"bypass provision dotdot", cdr, "GET", "/app/provision/../x.php", local, false, "default deny"},
		{"bad path", cdr, "GET", "/a%2flogin.php", local, false, "bad path"},
		{"options star", cdr, "OPTIONS", "*", local, false, "default deny"},
		{"prefix network any", mixed, "GET", "/admin/x", local, false, `deny "/admin/"`},
		{"glob dstar deep", mixed, "GET", "/secret/a/b/key.pem", local, false, "/secret/**/key.pem"},
		{"glob dstar zero", mixed, "GET", "/secret/key.pem", local, false, "/secret/**/key.pem"},
		{"glob dstar other file", mixed, "GET", "/secret/a/cert.pem", local, true, "default allow"},
		{"glob star", mixed, "GET", "/app/db.bak", local, false, "/app/*.bak"},
		{"glob star not across", mixed, "GET", "/app/x/db.bak", local, true, "default allow"},
		{"glob class", mixed, "GET", "/cfg/z1.xml", local, false, "[!a-m]"},
		{"glob class excluded", mixed, "GET", "/cfg/a1.xml", local, true, "default allow"},
		{"glob one needs one", mixed, "GET", "/cfg/z.xml", local, true, "default allow"},
		{"method put", mixed, "PUT", "/upload", local, false, `deny "= /upload"`},
		{"method post", mixed, "POST", "/upload", local, true, "default allow"},
		{"get covers head", mixed, "HEAD", "/page", local, false, `deny "= /page"`},
		{"case sensitive", cdr, "GET", "/LOGIN.PHP", local, false, "default deny"},
		{"case sensitive allow", mixed, "GET", "/ADMIN/x", local, true, "default allow"},
		{"allow method", allowOnly, "POST", "/api/x", local, true, `allow "/api/"`},
		{"allow other method", allowOnly, "GET", "/api/x", local, false, "reserved"},
		{"allow second rule", allowOnly, "GET", "/api/public/x", local, true, `allow "/api/public/"`},
		{"allow implicit default", allowOnly, "GET", "/x", local, false, "default deny"},
		{"explicit deny default", denyDefault, "GET", "/x", local, false, "default deny"},
		{"empty allows", empty, "GET", "/x", local, true, "default allow"},
		{"nil rules", nil, "GET", "/x", local, true, "no rules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			allow, why := tt.r.Decide(tt.method, tt.path, tt.src)
			if allow != tt.allow || !strings.Contains(why, tt.whyPart) {
				t.Fatalf("Decide(%s %s from %v) = %v %q, want %v and why containing %q",
					tt.method, tt.path, tt.src, allow, why, tt.allow, tt.whyPart)
			}
		})
	}
}

func TestCompileRulesErrors(t *testing.T) {
	_, err := CompileRules(RulesSpec{
		Default: "maybe",
		Deny: []RuleSpec{
			{Pattern: "login.php"},
			{Pattern: "= /ok"},
			{Pattern: "/a//b"},
			{Pattern: "/app/[z-a].php"},
			{Pattern: "/app/[abc"},
			{Pattern: "/x", Methods: []string{"get"}},
		},
		Allow: []RuleSpec{
			{Pattern: "=/%6cogin.php"},
			{Pattern: "/a\\b"},
			{Pattern: "/a/[/]"},
			{Pattern: "/n", Networks: []netip.Prefix{{}}},
			{Pattern: "/" + strings.Repeat("?", 300)},
		},
	})
	if !errors.Is(err, ErrBadPattern) {
		t.Fatalf("err = %v, want ErrBadPattern", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`default "maybe"`,
		`deny[0] "login.php"`, `must start with "/"`,
		`deny[2] "/a//b"`, `write "/a/b"`,
		`deny[3] "/app/[z-a].php"`, "bad range",
		`deny[4] "/app/[abc"`, "unterminated",
		`deny[5] "/x"`, "upper-case",
		`allow[0] "=/%6cogin.php"`, `write "/login.php"`,
		`allow[1] "/a\\b"`, "backslash",
		`allow[2] "/a/[/]"`, "'/' cannot",
		`allow[3] "/n"`, "invalid network",
		"glob too long",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, `"= /ok"`) {
		t.Errorf("valid rule reported:\n%s", msg)
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pat   string
		path  string
		match bool
	}{
		{"/a/*.php", "/a/x.php", true},
		{"/a/*.php", "/a/.php", true},
		{"/a/*.php", "/a/b/x.php", false},
		{"/a/**", "/a/", true},
		{"/a/**", "/a/b/c", true},
		{"/a/**", "/a", false},
		{"/a/**/b", "/a/b", true},
		{"/a/**/b", "/a/x/y/b", true},
		{"/a/**/b", "/a/xb", false},
		{"/**/x.php", "/x.php", true},
		{"/**/x.php", "/d/e/x.php", true},
		{"/**.php", "/d/e/x.php", true},
		{"/*/*", "/a/b", true},
		{"/*/*", "/a/b/c", false},
		{"/?", "/é", true},
		{"/??", "/é", false},
		{"/[é-ê]", "/ê", true},
		{"/[]]", "/]", true},
		{"/[!]]", "/]", false},
		{"/[^a]", "/b", true},
		{"/[a-]", "/-", true},
		{"/x[*]", "/x*", true},
		{"/x[*]", "/xy", false},
		{"/***", "/a/b", true},
		{"/a*b*c*d", "/aXbYcZd", true},
		{"/a*b*c*d", "/aXbYcZ", false},
		{"/" + strings.Repeat("*a", 50), "/" + strings.Repeat("a", 5000) + "b", false},
	}
	for _, tt := range tests {
		t.Run(tt.pat+" "+tt.path, func(t *testing.T) {
			g, err := compileGlob(tt.pat)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.HasPrefix(tt.path, g.prefix) && g.match(tt.path); got != tt.match {
				t.Fatalf("%q match %q = %v, want %v", tt.pat, tt.path, got, tt.match)
			}
		})
	}
}

func benchRules(t testing.TB) *Rules {
	t.Helper()
	r, err := CompileRules(RulesSpec{
		Deny: []RuleSpec{
			{Pattern: "= /"},
			{Pattern: "= /login.php"},
			{Pattern: "= /index.php"},
			{Pattern: "/app/**/*.bak"},
		},
		Allow: []RuleSpec{
			{Pattern: "/app/provision/"},
			{Pattern: "/themes/*/img/**"},
			{Pattern: "= /app/xml_cdr/xml_cdr_import.php", Methods: []string{"POST"},
				Networks: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDecideAllocs(t *testing.T) {
	r := benchRules(t)
	src := netip.MustParseAddr("10.20.1.2")
	for _, p := range []string{"/app/provision/00aabbccddee.cfg", "/themes/default/img/a/logo.png", "/login.php", "/app/xml_cdr/xml_cdr_import.php", "/other"} {
		if n := testing.AllocsPerRun(100, func() { r.Decide("POST", p, src) }); n != 0 {
			t.Errorf("Decide(%q) allocates %v times", p, n)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizePath("/a/b/c.php") }); n != 0 {
		t.Errorf("NormalizePath of a clean path allocates %v times", n)
	}
}

func BenchmarkDecide(b *testing.B) {
	r := benchRules(b)
	src := netip.MustParseAddr("192.0.2.1")
	paths := []string{"/app/provision/00aabbccddee.cfg", "/themes/default/img/a/logo.png", "/login.php", "/x/y"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Decide("GET", paths[i%len(paths)], src)
	}
}
