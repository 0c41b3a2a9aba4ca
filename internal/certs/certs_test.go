package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/testpki"
)

// testCA signs leaf certificates so that tests can tell CA-issued from
// self-signed ones.
type testCA struct{ *testpki.CA }

func newCA(t testing.TB) testCA { return testCA{testpki.New(t, "test CA")} }

// writeLeaf writes a CA-signed leaf for dnsNames (cn as common name) and
// returns its Pair.
func (ca testCA) writeLeaf(t testing.TB, dir, name, cn string, dnsNames ...string) Pair {
	t.Helper()
	certFile, keyFile := ca.WriteLeaf(t, dir, name, cn, dnsNames...)
	return Pair{Name: name, CertFile: certFile, KeyFile: keyFile}
}

func writeFile(t testing.TB, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func leafOf(t *testing.T, c *tls.Certificate) *x509.Certificate {
	t.Helper()
	if c == nil || c.Leaf == nil {
		t.Fatal("certificate without leaf")
	}
	return c.Leaf
}

func TestLoadLookup(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	pairs := []Pair{
		ca.writeLeaf(t, dir, "main", "example.com", "example.com", "www.example.com"),
		ca.writeLeaf(t, dir, "wild", "*.example.com", "*.example.com"),
		ca.writeLeaf(t, dir, "cnonly", "Legacy.Example.NET"),
		ca.writeLeaf(t, dir, "deep", "*.sip.example.com", "*.sip.example.com"),
	}
	s, err := Load(pairs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		sni  string
		want string // Subject CN of the chosen certificate, "" for none
	}{
		{"exact", "example.com", "example.com"},
		{"exact second SAN", "www.example.com", "example.com"},
		{"exact wins over wildcard", "WWW.example.com", "example.com"},
		{"upper case", "EXAMPLE.COM", "example.com"},
		{"trailing dot", "example.com.", "example.com"},
		{"wildcard", "pbx.example.com", "*.example.com"},
		{"wildcard upper case and dot", "PBX.Example.Com.", "*.example.com"},
		{"wildcard deeper suffix", "a.sip.example.com", "*.sip.example.com"},
		{"wildcard not two labels", "a.b.example.com", ""},
		{"one label under wildcard", "sip.example.com", "*.example.com"},
		{"wildcard apex", "example.net", ""},
		{"common name fallback", "legacy.example.net", "Legacy.Example.NET"},
		{"empty", "", ""},
		{"only dot", ".", ""},
		{"leading dot", ".example.com", ""},
		{"empty label", "a..example.com", ""},
		{"unknown", "other.org", ""},
		{"too long", strings.Repeat("a.", 200) + "example.com", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, ok := s.Lookup(tt.sni)
			if tt.want == "" {
				if ok || c != nil {
					t.Fatalf("Lookup(%q) = %v, want none", tt.sni, leafOf(t, c).Subject.CommonName)
				}
				return
			}
			if !ok {
				t.Fatalf("Lookup(%q) found nothing, want %q", tt.sni, tt.want)
			}
			if got := leafOf(t, c).Subject.CommonName; got != tt.want {
				t.Fatalf("Lookup(%q) = %q, want %q", tt.sni, got, tt.want)
			}
		})
	}
	if _, ok := s.Lookup("sip.example.com"); !ok {
		t.Fatal("the apex of *.sip.example.com must still match the one-label *.example.com")
	}

	c, ok := s.ByName("wild")
	if !ok || leafOf(t, c).Subject.CommonName != "*.example.com" {
		t.Fatalf("ByName(wild) = %v, %v", c, ok)
	}
	if _, ok := s.ByName("nope"); ok {
		t.Fatal("ByName(nope) found something")
	}

	infos := s.Infos()
	if len(infos) != 4 {
		t.Fatalf("Infos: %d, want 4", len(infos))
	}
	if infos[0].Name != "main" || !slices.Equal(infos[0].Hosts, []string{"example.com", "www.example.com"}) {
		t.Fatalf("Infos[0] = %+v", infos[0])
	}
	if infos[2].Hosts[0] != "legacy.example.net" {
		t.Fatalf("CN fallback host = %v", infos[2].Hosts)
	}
	for _, in := range infos {
		if in.SelfSigned {
			t.Fatalf("%s reported self-signed, it is CA-issued", in.Name)
		}
		if in.NotAfter.IsZero() || in.CertFile == "" || in.KeyFile == "" {
			t.Fatalf("incomplete info %+v", in)
		}
	}
	infos[0].Hosts[0] = "mutated"
	if s.Infos()[0].Hosts[0] != "example.com" {
		t.Fatal("Infos returned shared slices")
	}
}

// The apex of a wildcard must not match the wildcard itself.
func TestWildcardApex(t *testing.T) {
	dir := t.TempDir()
	s, err := Load([]Pair{newCA(t).writeLeaf(t, dir, "wild", "w", "*.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"example.com", "example.com.", "a.b.example.com", "com", ".example.com"} {
		if _, ok := s.Lookup(name); ok {
			t.Errorf("Lookup(%q) matched *.example.com", name)
		}
	}
	if _, ok := s.Lookup("x.example.com"); !ok {
		t.Error("Lookup(x.example.com) did not match *.example.com")
	}
}

func TestLoadHosts(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	a := ca.writeLeaf(t, dir, "a", "a", "shared.example.com", "a.example.com")
	b := ca.writeLeaf(t, dir, "b", "b", "shared.example.com", "b.example.com")
	c := ca.writeLeaf(t, dir, "c", "c", "c.example.com")
	c.Hosts = []string{"Shared.Example.com.", "elsewhere.example.org"}

	s, err := Load([]Pair{a, b, c})
	if err != nil {
		t.Fatal(err)
	}
	for sni, want := range map[string]string{
		"shared.example.com":    "c", // explicit Hosts win over SANs
		"a.example.com":         "a",
		"b.example.com":         "b",
		"c.example.com":         "", // explicit Hosts replace the SANs
		"elsewhere.example.org": "c",
	} {
		got, ok := s.Lookup(sni)
		if want == "" {
			if ok {
				t.Errorf("Lookup(%q) = %s, want none", sni, got.Leaf.Subject.CommonName)
			}
			continue
		}
		if !ok || got.Leaf.Subject.CommonName != want {
			t.Errorf("Lookup(%q) = %v, want %s", sni, ok, want)
		}
	}
	infos := s.Infos()
	if !slices.Equal(infos[0].Shadowed, []string{"shared.example.com"}) || !slices.Equal(infos[1].Shadowed, []string{"shared.example.com"}) {
		t.Errorf("Shadowed: a=%v b=%v", infos[0].Shadowed, infos[1].Shadowed)
	}
	if !slices.Equal(infos[2].Uncovered, []string{"shared.example.com", "elsewhere.example.org"}) {
		t.Errorf("Uncovered = %v", infos[2].Uncovered)
	}

	// The same host listed explicitly twice is a configuration error.
	d := ca.writeLeaf(t, dir, "d", "d", "d.example.com")
	d.Hosts = []string{"elsewhere.example.org"}
	_, err = Load([]Pair{a, c, d})
	if err == nil || !strings.Contains(err.Error(), `host "elsewhere.example.org" already listed`) {
		t.Fatalf("duplicate explicit host: err = %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	good := ca.writeLeaf(t, dir, "good", "good", "good.example.com")
	other := ca.writeLeaf(t, dir, "other", "other", "other.example.com")

	missing := Pair{Name: "missing", CertFile: filepath.Join(dir, "nope.crt"), KeyFile: good.KeyFile}
	mismatch := Pair{Name: "mismatch", CertFile: good.CertFile, KeyFile: other.KeyFile}
	garbageCert := filepath.Join(dir, "garbage.crt")
	writeFile(t, garbageCert, []byte("this is not PEM\n"))
	garbage := Pair{Name: "garbage", CertFile: garbageCert, KeyFile: good.KeyFile}
	garbageKey := filepath.Join(dir, "garbage.key")
	writeFile(t, garbageKey, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	badKey := Pair{Name: "badkey", CertFile: good.CertFile, KeyFile: garbageKey}
	keyAsCert := Pair{Name: "swapped", CertFile: good.KeyFile, KeyFile: good.CertFile}

	_, err := Load([]Pair{good, missing, mismatch, garbage, badKey, keyAsCert, {CertFile: good.CertFile, KeyFile: good.KeyFile}, {Name: "good", CertFile: good.CertFile, KeyFile: good.KeyFile}, {Name: "nofiles"}})
	if err == nil {
		t.Fatal("Load succeeded")
	}
	msg := err.Error()
	for _, want := range []string{
		`certificate "missing": open ` + missing.CertFile,
		`certificate "mismatch": ` + good.CertFile + " with " + other.KeyFile + ": tls: private key does not match public key",
		`certificate "garbage": ` + garbageCert + ": no PEM CERTIFICATE block",
		`certificate "badkey": ` + good.CertFile + " with " + garbageKey,
		`certificate "swapped": ` + good.KeyFile + ": no PEM CERTIFICATE block",
		"certificate #7: name is empty",
		`certificate "good": name used twice`,
		`certificate "nofiles": certificate file and key file are both required`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "\n") + 1; n != 8 {
		t.Errorf("got %d problems, want 8:\n%s", n, msg)
	}
	var pe *os.PathError
	if !errors.As(err, &pe) {
		t.Error("missing file error does not wrap *os.PathError")
	}
}

func TestLookupAllocs(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	s, err := Load([]Pair{
		ca.writeLeaf(t, dir, "a", "a", "pbx.example.com"),
		ca.writeLeaf(t, dir, "w", "w", "*.example.com"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pbx.example.com", "PBX.Example.COM.", "x.example.com", "X.EXAMPLE.COM", "miss.example.org", ""} {
		if n := testing.AllocsPerRun(100, func() { s.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", name, n)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	dir := b.TempDir()
	ca := newCA(b)
	s, err := Load([]Pair{
		ca.writeLeaf(b, dir, "a", "a", "pbx.example.com"),
		ca.writeLeaf(b, dir, "w", "w", "*.example.com"),
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"pbx.example.com", "Tenant7.Example.com"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Lookup(name)
			}
		})
	}
}

// FuzzLookup checks Lookup against a straightforward reference matcher.
func FuzzLookup(f *testing.F) {
	for _, s := range []string{"example.com", "A.Example.com.", "a.b.example.com", ".example.com", "", ".", "x..example.com", "*.example.com", "example.com.."} {
		f.Add(s)
	}
	hosts := []string{"example.com", "*.example.com", "pbx.tenant.example.org", "*.tenant.example.org"}
	s := &Store{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	certs := map[*tls.Certificate]string{}
	for _, h := range hosts {
		c := &tls.Certificate{}
		certs[c] = h
		if suffix, ok := strings.CutPrefix(h, "*."); ok {
			s.wildcard[suffix] = c
		} else {
			s.exact[h] = c
		}
	}
	reference := func(name string) string {
		name = strings.TrimSuffix(name, ".")
		if name == "" || len(name) > maxHostLen {
			return ""
		}
		name = asciiLower(name)
		if slices.Contains(hosts, name) && !strings.HasPrefix(name, "*.") {
			return name
		}
		first, rest, ok := strings.Cut(name, ".")
		if !ok || first == "" || rest == "" {
			return ""
		}
		if w := "*." + rest; slices.Contains(hosts, w) {
			return w
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, ok := s.Lookup(name)
		got := ""
		if ok {
			got = certs[c]
		}
		if want := reference(name); got != want {
			t.Fatalf("Lookup(%q) = %q, reference %q", name, got, want)
		}
	})
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func TestSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tls")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	p, created, err := SelfSigned(dir, []string{"pbx.example.com", "192.0.2.7"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !created || p.Name != SelfSignedName || p.CertFile != filepath.Join(dir, "selfsigned.crt") || p.KeyFile != filepath.Join(dir, "selfsigned.key") {
		t.Fatalf("SelfSigned = %+v, %v", p, created)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, p.KeyFile: 0o600, p.CertFile: 0o644} {
		st, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode(), want)
		}
	}
	s, err := Load([]Pair{p})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := s.Lookup("PBX.example.com")
	if !ok {
		t.Fatal("self-signed certificate not chosen for its host")
	}
	leaf := c.Leaf
	if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok || leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("key type %T", c.PrivateKey)
	}
	if curve := c.PrivateKey.(*ecdsa.PrivateKey).Curve; curve != elliptic.P256() {
		t.Fatalf("curve %v", curve.Params().Name)
	}
	for _, h := range []string{"pbx.example.com", "localhost", "127.0.0.1", "::1", "192.0.2.7"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("self-signed certificate does not cover %s: %v", h, err)
		}
	}
	if !leaf.NotAfter.Equal(now.Add(365 * 24 * time.Hour)) {
		t.Errorf("NotAfter = %v", leaf.NotAfter)
	}
	if !s.Infos()[0].SelfSigned {
		t.Error("Info.SelfSigned = false for the generated certificate")
	}
	certBefore, _ := os.ReadFile(p.CertFile)

	steps := []struct {
		name    string
		hosts   []string
		now     time.Time
		created bool
	}{
		{"reuse", []string{"pbx.example.com"}, now.Add(24 * time.Hour), false},
		{"reuse without hosts", nil, now.Add(300 * 24 * time.Hour), false},
		{"regenerate when expiring", []string{"pbx.example.com"}, now.Add(340 * 24 * time.Hour), true},
		{"reuse regenerated", []string{"pbx.example.com"}, now.Add(341 * 24 * time.Hour), false},
		{"regenerate for a new host", []string{"pbx.example.com", "new.example.com"}, now.Add(342 * 24 * time.Hour), true},
		{"regenerate when not yet valid", nil, now, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			p2, created, err := SelfSigned(dir, st.hosts, st.now)
			if err != nil {
				t.Fatal(err)
			}
			if p2.Name != p.Name || p2.CertFile != p.CertFile || p2.KeyFile != p.KeyFile || p2.Hosts != nil {
				t.Fatalf("pair changed: %+v", p2)
			}
			if created != st.created {
				t.Fatalf("created = %v, want %v", created, st.created)
			}
			after, _ := os.ReadFile(p.CertFile)
			if changed := !bytes.Equal(after, certBefore); changed != st.created {
				t.Fatalf("file changed = %v, want %v", changed, st.created)
			}
			certBefore = after
			if st, err := os.Stat(p.KeyFile); err != nil || st.Mode() != 0o600 {
				t.Fatalf("key mode after regeneration: %v %v", st.Mode(), err)
			}
		})
	}

	// Unreadable or corrupt files are replaced.
	writeFile(t, p.KeyFile, []byte("garbage"))
	if _, created, err := SelfSigned(dir, nil, now); err != nil || !created {
		t.Fatalf("corrupt key: created=%v err=%v", created, err)
	}
	if _, err := Load([]Pair{p}); err != nil {
		t.Fatalf("regenerated pair does not load: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("stray files in %s: %v", dir, entries)
	}
}

func TestSelfSignedError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, nil)
	if _, _, err := SelfSigned(filepath.Join(file, "sub"), nil, time.Now()); err == nil || !strings.Contains(err.Error(), file) {
		t.Fatalf("SelfSigned under a file: %v", err)
	}
}

// handshake runs a TLS handshake between cfg and a client sending sni, and
// returns the server certificate's common name and the server error.
func handshake(t *testing.T, cfg *tls.Config, sni string, clientMax uint16) (string, error) {
	t.Helper()
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	srvErr := make(chan error, 1)
	go func() {
		srv := tls.Server(sc, cfg)
		err := srv.Handshake()
		if err != nil {
			sc.Close() // unblock the client
		}
		srvErr <- err
	}()
	cli := tls.Client(cc, &tls.Config{ServerName: sni, InsecureSkipVerify: true, MaxVersion: clientMax})
	cliErr := cli.Handshake()
	err := <-srvErr
	if err != nil {
		return "", err
	}
	if cliErr != nil {
		t.Fatalf("client failed, server did not: %v", cliErr)
	}
	return cli.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestServerConfig(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	s, err := Load([]Pair{
		ca.writeLeaf(t, dir, "main", "main", "pbx.example.com"),
		ca.writeLeaf(t, dir, "wild", "wild", "*.example.com"),
		ca.writeLeaf(t, dir, "fallback", "fallback", "fallback.invalid"),
	})
	if err != nil {
		t.Fatal(err)
	}
	lenient, err := ServerConfig(s, "fallback", false, 0, []string{"h2", "http/1.1"})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := ServerConfig(s, "fallback", true, tls.VersionTLS13, nil)
	if err != nil {
		t.Fatal(err)
	}
	noDefault, err := ServerConfig(s, "", false, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lenient.MinVersion != tls.VersionTLS12 || !slices.Equal(lenient.NextProtos, []string{"h2", "http/1.1"}) {
		t.Fatalf("config: min %x protos %v", lenient.MinVersion, lenient.NextProtos)
	}
	for _, id := range lenient.CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "GCM") || strings.Contains(name, "CHACHA20")) {
			t.Errorf("non-modern suite %s", name)
		}
	}

	tests := []struct {
		name      string
		cfg       *tls.Config
		sni       string
		clientMax uint16
		want      string // CN, or "" for an ErrUnknownSNI failure
	}{
		{"exact tls13", lenient, "pbx.example.com", 0, "main"},
		{"exact tls12", lenient, "pbx.example.com", tls.VersionTLS12, "main"},
		{"wildcard", lenient, "tenant.example.com", 0, "wild"},
		{"no sni gets default", lenient, "", 0, "fallback"},
		{"unknown sni gets default", lenient, "other.org", 0, "fallback"},
		{"strict known", strict, "pbx.example.com", 0, "main"},
		{"strict unknown", strict, "other.org", 0, ""},
		{"strict no sni", strict, "", 0, ""},
		{"no default unknown", noDefault, "other.org", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := handshake(t, tt.cfg, tt.sni, tt.clientMax)
			if tt.want == "" {
				if !errors.Is(err, ErrUnknownSNI) {
					t.Fatalf("err = %v, want ErrUnknownSNI", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// TLS 1.2 client against a TLS 1.3-only listener fails (not with SNI).
	if _, err := handshake(t, strict, "pbx.example.com", tls.VersionTLS12); err == nil || errors.Is(err, ErrUnknownSNI) {
		t.Fatalf("TLS 1.2 client on TLS 1.3 listener: %v", err)
	}

	legacy, err := ServerConfig(s, "", false, tls.VersionTLS10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(legacy.CipherSuites, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA) {
		t.Error("TLS 1.0 listener without CBC suites")
	}
	if slices.Contains(lenient.CipherSuites, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA) {
		t.Error("legacy suites leaked into the modern list")
	}

	for name, f := range map[string]func() error{
		"unknown default": func() error { _, err := ServerConfig(s, "nope", false, 0, nil); return err },
		"bad version":     func() error { _, err := ServerConfig(s, "", false, 0x0300, nil); return err },
		"nil store":       func() error { _, err := ServerConfig(nil, "", false, 0, nil); return err },
	} {
		if f() == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
