package ldap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// nameCases are bind names with their Domain and User.
var nameCases = []struct {
	name, domain, user string
}{
	// Down-level logon names.
	{`EXAMPLE\bob`, "example", "bob"},
	{`example\Bob`, "example", "Bob"},
	{` EXAMPLE\bob `, "example", "bob"},
	{`EXAMPLE\`, "example", ""},
	{`\bob`, "", "bob"},
	{`A\B\C`, "a", `B\C`},
	{`CORP.EXAMPLE.COM\bob`, "corp.example.com", "bob"},
	{`DOM\us=er`, "dom", "us=er"},

	// User principal names.
	{"alice@example.com", "example.com", "alice"},
	{"Alice@Dom.Example", "dom.example", "Alice"},
	{"alice@example.com.", "example.com", "alice"},
	{"a@b@example.com", "example.com", "a@b"},
	{"@example.com", "example.com", ""},
	{"alice@", "", "alice"},
	{" alice @ example.com ", "example.com", "alice"},

	// Distinguished names.
	{"CN=x,OU=y,DC=example,DC=com", "example.com", "x"},
	{"cn=admin,dc=example,dc=com", "example.com", "admin"},
	{"uid=john,ou=People,dc=Corp,dc=Example,dc=COM", "corp.example.com", "john"},
	{"CN = John Smith , OU = Sales , DC = example , DC = com", "example.com", "John Smith"},
	{`CN=Smith\, John,OU=Sales,DC=example,DC=com`, "example.com", "Smith, John"},
	{`CN=Smith\2C John,DC=example,DC=com`, "example.com", "Smith, John"},
	{`CN=\#hash\ ,DC=example,DC=com`, "example.com", "#hash "},
	{`CN=x,DC=ex\2Eample,DC=com`, "ex.ample.com", "x"},
	{`CN=x,DC=exa\,mple,DC=com`, "exa,mple.com", "x"},
	{"cn=x;dc=example;dc=com", "example.com", "x"},
	{"cn=x+uid=y,dc=example,dc=com", "example.com", "x"},
	{"uid=y+dc=first,dc=example,dc=com", "first.example.com", "y"},
	{`cn="Smith, John",dc=example,dc=com`, "example.com", "Smith, John"},
	{`cn="quoted \" inside" , dc=example,dc=com`, "example.com", `quoted " inside`},
	{"domainComponent=example,DOMAINCOMPONENT=com", "example.com", "example"},
	{"cn=x,0.9.2342.19200300.100.1.25=example,OID.0.9.2342.19200300.100.1.25=org", "example.org", "x"},
	{"cn=x,o=Example Inc,c=US", "", "x"},
	{"cn=x,dc=,dc=com", "com", "x"},
	{"cn=x,dc=example,dc=com,", "example.com", "x"},
	{"cn=x,,dc=example,dc=com", "", "x"}, // malformed part stops the walk
	{"cn=x,dc=example,garbage", "example", "x"},
	{"cn=alice@example.com,dc=corp,dc=test", "corp.test", "alice@example.com"},
	{"CN=", "", ""},
	{`cn=trailing\`, "", "trailing"},
	{"dc=example,dc=com", "example.com", "example"},

	// Neither.
	{"", "", ""},
	{"   ", "", ""},
	{"admin", "", "admin"},
	{"=value", "", "=value"},
	{"bad type=x,dc=com", "", "bad type=x,dc=com"},
	{"K\u212a@example.com", "example.com", "K\u212a"},
	{"user@EXAMPLE.\u212aOM", "example.\u212aom", "user"}, // no Unicode folding

	// Unicode white space is trimmed like strings.TrimSpace does.
	{"\u00a0EXAMPLE\\bob\u2003", "example", "bob"},
	{"alice@example.com\u3000", "example.com", "alice"},
	{"\u0085cn=x,dc=example,dc=com\u00a0", "example.com", "x"},
	{"cn=x,dc=com. .", "com. ", "x"}, // spaces, then dots: one round each
	{"user@\xffexample.com", "\xffexample.com", "user"},
}

func TestDomainAndUser(t *testing.T) {
	for _, tt := range nameCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := Domain(tt.name); got != tt.domain {
				t.Errorf("Domain(%q) = %q, want %q", tt.name, got, tt.domain)
			}
			if got := User(tt.name); got != tt.user {
				t.Errorf("User(%q) = %q, want %q", tt.name, got, tt.user)
			}
		})
	}
}

// TestDomainMatchesReference checks AppendDomain, Domain, User and
// eventUser against the first implementation kept in name_ref_test.go.
func TestDomainMatchesReference(t *testing.T) {
	for _, tt := range nameCases {
		t.Run(tt.name, func(t *testing.T) { sameAsReference(t, tt.name) })
	}
	t.Run("long user", func(t *testing.T) {
		sameAsReference(t, "cn="+strings.Repeat("é", 200)+",dc=example,dc=com")
		sameAsReference(t, strings.Repeat("é", 200)+"@example.com")
	})
}

// sameAsReference fails t unless the allocation-free functions agree with
// the reference implementation on name.
func sameAsReference(t *testing.T, name string) {
	t.Helper()
	want := refDomain(name)
	if got := Domain(name); got != want {
		t.Errorf("Domain(%q) = %q, reference %q", name, got, want)
	}
	if got := string(AppendDomain([]byte("prefix:"), []byte(name))); got != "prefix:"+want {
		t.Errorf("AppendDomain(prefix:, %q) = %q, reference %q", name, got, "prefix:"+want)
	}
	wantUser := refUser(name)
	if got := User(name); got != wantUser {
		t.Errorf("User(%q) = %q, reference %q", name, got, wantUser)
	}
	if got, want := eventUser([]byte(name)), clipUser(wantUser); got != want {
		t.Errorf("eventUser(%q) = %q, reference %q", name, got, want)
	}
}

func TestDomainAllocs(t *testing.T) {
	for _, name := range []string{`example\bob`, "alice@example.com"} {
		if n := testing.AllocsPerRun(100, func() { Domain(name) }); n != 0 {
			t.Errorf("Domain(%q) allocated %v times", name, n)
		}
		if n := testing.AllocsPerRun(100, func() { User(name) }); n != 0 {
			t.Errorf("User(%q) allocated %v times", name, n)
		}
	}
	var buf [64]byte
	for _, name := range [][]byte{
		[]byte(`EXAMPLE\bob`), []byte("alice@Example.COM"),
		[]byte(`CN=Smith\, John,OU=Sales,DC=Corp,DC=Ex\61mple,DC="com"`),
	} {
		if n := testing.AllocsPerRun(100, func() { AppendDomain(buf[:0], name) }); n != 0 {
			t.Errorf("AppendDomain(%q) allocated %v times", name, n)
		}
		// The user string for events is its only allocation.
		if n := testing.AllocsPerRun(100, func() { eventUser(name) }); n != 1 {
			t.Errorf("eventUser(%q) allocated %v times, want 1", name, n)
		}
	}
}

func BenchmarkAppendDomainDN(b *testing.B) {
	name := []byte("CN=John Smith,OU=Sales,DC=corp,DC=example,DC=com")
	var buf [64]byte
	b.ReportAllocs()
	for b.Loop() {
		AppendDomain(buf[:0], name)
	}
}

func BenchmarkDomainDN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Domain("CN=John Smith,OU=Sales,DC=corp,DC=example,DC=com")
	}
}

func TestClipUser(t *testing.T) {
	long := strings.Repeat("é", 200) // 400 octets
	got := clipUser(long)
	if len(got) > maxUserLen || !utf8.ValidString(got) || !strings.HasPrefix(long, got) || len(got) < maxUserLen-1 {
		t.Fatalf("clipUser gave %d octets, valid %v", len(got), utf8.ValidString(got))
	}
	if clipUser("bob") != "bob" {
		t.Fatal("short name changed")
	}
}
