// Package certs loads the certificates a gateway serves, chooses one per TLS
// handshake by SNI, creates the self-signed fallback certificate on first
// start, and builds the tls.Config of a listener.
//
// It does not watch files (a reload calls Load again and swaps the result),
// does not obtain certificates (ACME comes later) and does not log: Load
// returns every problem at once and Infos reports what an operator should be
// warned about (self-signed, expiring, names the certificate does not cover).
package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Pair names one certificate and key file.
type Pair struct {
	// Name identifies the pair in the configuration; listeners name their
	// default certificate with it. Required and unique.
	Name string
	// CertFile is the PEM certificate chain, leaf first.
	CertFile string
	// KeyFile is the PEM private key (PKCS#1, PKCS#8 or SEC 1).
	KeyFile string
	// Hosts are the server names the certificate is chosen for. Empty means
	// the certificate's DNS subject alternative names, or its common name if
	// it has none. A name may be a one-label wildcard ("*.example.com").
	// Names listed here take precedence over names other pairs get from
	// their certificates; the same name listed explicitly by two pairs is an
	// error.
	Hosts []string
}

// Info describes a loaded certificate for the configuration audit and the
// startup warnings.
type Info struct {
	Name      string
	CertFile  string
	KeyFile   string
	Hosts     []string  // the names the certificate is chosen for (normalised)
	Subject   string    // leaf subject, for humans
	NotBefore time.Time // leaf validity
	NotAfter  time.Time
	// SelfSigned is true when the leaf is signed by its own key: clients
	// will not trust it without manual configuration.
	SelfSigned bool
	// Uncovered lists Hosts the certificate itself is not valid for (only
	// possible with explicit Pair.Hosts); clients will reject it for them.
	Uncovered []string
	// Shadowed lists names of this certificate that another pair serves
	// (listed explicitly or earlier), so this one is never chosen for them.
	Shadowed []string
}

// Store holds loaded certificates. It is immutable after Load and safe for
// concurrent use.
type Store struct {
	byName   map[string]*tls.Certificate // Pair.Name
	exact    map[string]*tls.Certificate // lower-case host, no trailing dot
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
	infos    []Info
}

// maxHostLen is the longest DNS name (RFC 1035) Lookup considers.
const maxHostLen = 253

// Load reads every pair, checks that each key matches its certificate, and
// indexes the certificates by name. It returns every problem at once, each
// naming the pair and the file.
func Load(pairs []Pair) (*Store, error) {
	s := &Store{
		byName:   make(map[string]*tls.Certificate, len(pairs)),
		exact:    make(map[string]*tls.Certificate),
		wildcard: make(map[string]*tls.Certificate),
	}
	var errs []error
	type loaded struct {
		cert     *tls.Certificate
		info     int
		explicit bool
		hosts    []string
		index    int
	}
	var ok []loaded
	for i, p := range pairs {
		if p.Name == "" {
			errs = append(errs, &PairError{Index: i, Err: errors.New("name is empty")})
		} else if _, dup := s.byName[p.Name]; dup {
			errs = append(errs, &PairError{Index: i, Name: p.Name, Err: errors.New("name used twice")})
			continue
		}
		cert, err := loadPair(p)
		if err != nil {
			errs = append(errs, &PairError{Index: i, Name: p.Name, Err: err})
			continue
		}
		if p.Name != "" {
			s.byName[p.Name] = cert
		}
		info := describe(p, cert.Leaf)
		s.infos = append(s.infos, info)
		ok = append(ok, loaded{cert: cert, info: len(s.infos) - 1, explicit: len(p.Hosts) > 0, hosts: info.Hosts, index: i})
	}
	// Explicit hosts first, so they win over names taken from certificates;
	// then certificate names in configuration order (first wins).
	owner := make(map[string]string) // normalised host → pair name
	for _, explicit := range []bool{true, false} {
		for _, l := range ok {
			if l.explicit != explicit {
				continue
			}
			info := &s.infos[l.info]
			for _, h := range l.hosts {
				if prev, taken := owner[h]; taken {
					if explicit && prev != info.Name {
						errs = append(errs, &PairError{Index: l.index, Name: info.Name, Err: fmt.Errorf("host %q already listed by certificate %q", h, prev)})
					} else if prev != info.Name {
						info.Shadowed = append(info.Shadowed, h)
					}
					continue
				}
				owner[h] = info.Name
				if suffix, ok := strings.CutPrefix(h, "*."); ok {
					s.wildcard[suffix] = l.cert
				} else {
					s.exact[h] = l.cert
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// loadPair reads and checks one pair; errors name the file at fault.
func loadPair(p Pair) (*tls.Certificate, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil, errors.New("certificate file and key file are both required")
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, err // *PathError names the file
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, err
	}
	if err := hasBlock(certPEM, "CERTIFICATE"); err != nil {
		return nil, fmt.Errorf("%s: %w", p.CertFile, err)
	}
	if err := hasBlock(keyPEM, "PRIVATE KEY"); err != nil {
		return nil, fmt.Errorf("%s: %w", p.KeyFile, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s with %s: %w", p.CertFile, p.KeyFile, err)
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.CertFile, err)
		}
		cert.Leaf = leaf
	}
	return &cert, nil
}

// hasBlock reports an error unless data holds a PEM block whose type ends
// in suffix ("CERTIFICATE", "PRIVATE KEY" which also matches "EC PRIVATE
// KEY" and "RSA PRIVATE KEY").
func hasBlock(data []byte, suffix string) error {
	for range 64 { // bounded: a key or chain file has a handful of blocks
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if strings.HasSuffix(b.Type, suffix) {
			return nil
		}
	}
	return fmt.Errorf("no PEM %s block", suffix)
}

// describe builds the Info for a loaded pair.
func describe(p Pair, leaf *x509.Certificate) Info {
	info := Info{
		Name:       p.Name,
		CertFile:   p.CertFile,
		KeyFile:    p.KeyFile,
		Subject:    leaf.Subject.String(),
		NotBefore:  leaf.NotBefore,
		NotAfter:   leaf.NotAfter,
		SelfSigned: selfSigned(leaf),
	}
	hosts := p.Hosts
	if len(hosts) == 0 {
		hosts = leaf.DNSNames
		if len(hosts) == 0 && leaf.Subject.CommonName != "" {
			hosts = []string{leaf.Subject.CommonName}
		}
	}
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		n := normalize(h)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		info.Hosts = append(info.Hosts, n)
		if len(p.Hosts) > 0 && !covers(leaf, n) {
			info.Uncovered = append(info.Uncovered, n)
		}
	}
	return info
}

// covers reports whether leaf is valid for host, a wildcard host being
// probed with an arbitrary first label.
func covers(leaf *x509.Certificate, host string) bool {
	if suffix, ok := strings.CutPrefix(host, "*."); ok {
		host = "pbxgate-probe." + suffix
	}
	return leaf.VerifyHostname(host) == nil
}

// selfSigned reports whether leaf is signed by its own key.
func selfSigned(leaf *x509.Certificate) bool {
	if !bytes.Equal(leaf.RawIssuer, leaf.RawSubject) {
		return false
	}
	return leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
}

// normalize lower-cases a configured host name and drops a trailing dot.
func normalize(h string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(h), "."))
}

// Lookup returns the certificate for a TLS server name: an exact match
// (case-insensitive, a trailing dot ignored) first, then a wildcard that
// replaces exactly the first label ("*.example.com" matches
// "a.example.com", not "example.com" nor "a.b.example.com"). It does not
// allocate.
func (s *Store) Lookup(serverName string) (*tls.Certificate, bool) {
	if s == nil {
		return nil, false
	}
	name := strings.TrimSuffix(serverName, ".")
	if name == "" || len(name) > maxHostLen {
		return nil, false
	}
	var buf [maxHostLen]byte
	n := copy(buf[:], name)
	for i := range n {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + ('a' - 'A')
		}
	}
	lower := buf[:n]
	if c, ok := s.exact[string(lower)]; ok { // no allocation: map index by converted []byte
		return c, true
	}
	dot := bytes.IndexByte(lower, '.')
	if dot <= 0 || dot == n-1 {
		return nil, false
	}
	c, ok := s.wildcard[string(lower[dot+1:])]
	return c, ok
}

// ByName returns the certificate of the pair called name.
func (s *Store) ByName(name string) (*tls.Certificate, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.byName[name]
	return c, ok
}

// Infos describes every loaded certificate, in configuration order.
func (s *Store) Infos() []Info {
	if s == nil {
		return nil
	}
	out := make([]Info, len(s.infos))
	for i, in := range s.infos {
		in.Hosts = append([]string(nil), in.Hosts...)
		in.Uncovered = append([]string(nil), in.Uncovered...)
		in.Shadowed = append([]string(nil), in.Shadowed...)
		out[i] = in
	}
	return out
}
