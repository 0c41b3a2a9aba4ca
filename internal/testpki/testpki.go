// Package testpki is a test-only helper: a throw-away CA issuing leaf
// certificates for loopback tests; never used by production code.
//
// Every key is ECDSA P-256 and every certificate is valid from an hour
// before it is made until 24 hours after. It does not make expired,
// not-yet-valid, RSA or self-signed leaf certificates: tests that need those
// build them themselves.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that lives as long as a test.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New makes a CA whose subject common name is name, failing t on error.
func New(t testing.TB, name string) *CA {
	t.Helper()
	cert, key := issue(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil, nil)
	return &CA{cert: cert, key: key}
}

// Cert is the CA certificate.
func (c *CA) Cert() *x509.Certificate { return c.cert }

// Pool returns a new pool trusting only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// PEM is the CA certificate as one PEM CERTIFICATE block.
func (c *CA) PEM() []byte { return certPEM(c.cert.Raw) }

// WritePEM writes the CA certificate to dir/name and returns that path.
func (c *CA) WritePEM(t testing.TB, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	write(t, path, c.PEM())
	return path
}

// Leaf issues a server certificate with subject common name cn for hosts,
// each a DNS name (wildcards allowed) or an IP address literal; hosts may be
// empty for a certificate that names only cn. The chain holds the leaf alone
// and Leaf is set, as crypto/tls wants for a server certificate.
func (c *CA) Leaf(t testing.TB, cn string, hosts ...string) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, key := issue(t, tmpl, c.cert, c.key)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// WriteLeaf issues a certificate as Leaf does and writes it to dir/name.crt
// and its PKCS #8 key to dir/name.key, returning both paths.
func (c *CA) WriteLeaf(t testing.TB, dir, name, cn string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	leaf := c.Leaf(t, cn, hosts...)
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatalf("testpki: encoding key of %q: %v", cn, err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	write(t, certFile, certPEM(leaf.Certificate[0]))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// issue signs tmpl, completed with a new key, a random serial number and
// the validity window, by parent; a nil parent makes it self-signed.
func issue(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	name := tmpl.Subject.CommonName
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testpki: key for %q: %v", name, err)
	}
	// A random serial keeps certificates of different CAs in one test from
	// sharing issuer and serial by accident.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("testpki: serial number for %q: %v", name, err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatalf("testpki: issuing %q: %v", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testpki: parsing %q: %v", name, err)
	}
	return cert, key
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("testpki: %v", err)
	}
}
