package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/pbxgate/pbxgate/internal/atomicfile"
)

// Self-signed certificate parameters.
const (
	SelfSignedName     = "selfsigned"         // Pair.Name of the generated pair
	selfSignedCertFile = "selfsigned.crt"     // in the directory given to SelfSigned
	selfSignedKeyFile  = "selfsigned.key"     //
	selfSignedLifetime = 365 * 24 * time.Hour // validity of a new certificate
	selfSignedRenew    = 30 * 24 * time.Hour  // regenerate when less is left
)

// SelfSigned makes sure dir/selfsigned.crt and dir/selfsigned.key hold a
// usable self-signed certificate and returns its Pair.
//
// A new certificate has an ECDSA P-256 key, the subject alternative names
// hosts + "localhost" + 127.0.0.1 + ::1 (IP addresses in hosts become IP
// SANs), and is valid for one year from now (back-dated one hour for clock
// skew). The key file is written with mode 0600 and dir is created with mode
// 0700 if missing; both files are replaced atomically.
//
// Existing files are reused unless they cannot be loaded as a matching pair,
// expire within 30 days of now, are not yet valid at now, or do not cover
// every name in hosts (so adding a host to the configuration takes effect).
// created reports whether new files were written.
func SelfSigned(dir string, hosts []string, now time.Time) (p Pair, created bool, err error) {
	p = Pair{
		Name:     SelfSignedName,
		CertFile: filepath.Join(dir, selfSignedCertFile),
		KeyFile:  filepath.Join(dir, selfSignedKeyFile),
	}
	if reusable(p, hosts, now) {
		return p, false, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Pair{}, false, fmt.Errorf("self-signed certificate: %w", err)
	}
	certPEM, keyPEM, err := generate(hosts, now)
	if err != nil {
		return Pair{}, false, fmt.Errorf("self-signed certificate: %w", err)
	}
	// Key first: a crash between the two renames leaves a mismatched pair,
	// which the next start detects and regenerates.
	if err := atomicfile.WriteBytes(p.KeyFile, keyPEM, 0o600); err != nil {
		return Pair{}, false, fmt.Errorf("self-signed certificate: %w", err)
	}
	if err := atomicfile.WriteBytes(p.CertFile, certPEM, 0o644); err != nil {
		return Pair{}, false, fmt.Errorf("self-signed certificate: %w", err)
	}
	return p, true, nil
}

// reusable reports whether the existing pair can serve hosts at now.
func reusable(p Pair, hosts []string, now time.Time) bool {
	cert, err := loadPair(p)
	if err != nil {
		return false
	}
	leaf := cert.Leaf
	if now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < selfSignedRenew {
		return false
	}
	for _, h := range append([]string{"localhost", "127.0.0.1", "::1"}, hosts...) {
		if n := normalize(h); n != "" && !covers(leaf, n) {
			return false
		}
	}
	return true
}

// generate creates a new self-signed certificate and key in PEM.
func generate(hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "pbxgate self-signed", Organization: []string{"pbxgate"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	seen := map[string]bool{"localhost": true, "127.0.0.1": true, "::1": true}
	for _, h := range hosts {
		n := normalize(h)
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}
