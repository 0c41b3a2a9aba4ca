package ldap

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDomainAndUser(t *testing.T) {
	tests := []struct {
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
	}
	for _, tt := range tests {
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

func TestDomainAllocs(t *testing.T) {
	for _, name := range []string{`example\bob`, "alice@example.com"} {
		if n := testing.AllocsPerRun(100, func() { Domain(name) }); n != 0 {
			t.Errorf("Domain(%q) allocated %v times", name, n)
		}
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
