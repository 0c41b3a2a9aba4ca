package testpki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"slices"
	"testing"
)

func TestLeafVerifies(t *testing.T) {
	ca, other := New(t, "test CA"), New(t, "other CA")
	leaf := ca.Leaf(t, "pbx.example.com", "pbx.example.com", "*.tenant.example.com", "127.0.0.1", "::1")
	if len(leaf.Certificate) != 1 || leaf.Leaf == nil || leaf.PrivateKey == nil {
		t.Fatalf("Leaf = %d certificates, leaf %v, key %v", len(leaf.Certificate), leaf.Leaf != nil, leaf.PrivateKey != nil)
	}
	if cn := leaf.Leaf.Subject.CommonName; cn != "pbx.example.com" {
		t.Fatalf("common name %q", cn)
	}
	if !slices.Equal(leaf.Leaf.DNSNames, []string{"pbx.example.com", "*.tenant.example.com"}) || len(leaf.Leaf.IPAddresses) != 2 {
		t.Fatalf("DNS %v, IPs %v", leaf.Leaf.DNSNames, leaf.Leaf.IPAddresses)
	}
	tests := []struct {
		name  string
		host  string
		roots *x509.CertPool
		want  error // nil: verifies
	}{
		{"DNS name", "pbx.example.com", ca.Pool(), nil},
		{"wildcard", "a.tenant.example.com", ca.Pool(), nil},
		{"IPv4", "127.0.0.1", ca.Pool(), nil},
		{"IPv6", "::1", ca.Pool(), nil},
		{"other host", "other.example.com", ca.Pool(), x509.HostnameError{}},
		{"other CA", "pbx.example.com", other.Pool(), x509.UnknownAuthorityError{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: tt.roots, DNSName: tt.host})
			switch tt.want.(type) {
			case nil:
				if err != nil {
					t.Fatal(err)
				}
			case x509.HostnameError:
				var he x509.HostnameError
				if !errors.As(err, &he) {
					t.Fatalf("err = %v, want x509.HostnameError", err)
				}
			case x509.UnknownAuthorityError:
				var ue x509.UnknownAuthorityError
				if !errors.As(err, &ue) {
					t.Fatalf("err = %v, want x509.UnknownAuthorityError", err)
				}
			}
		})
	}
	if ca.Leaf(t, "x", "x.example.com").Leaf.SerialNumber.Cmp(ca.Leaf(t, "x", "x.example.com").Leaf.SerialNumber) == 0 {
		t.Fatal("two leaves share a serial number")
	}
}

func TestFiles(t *testing.T) {
	dir := t.TempDir()
	ca := New(t, "file CA")
	certFile, keyFile := ca.WriteLeaf(t, dir, "a", "Legacy.Example.NET")
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf.Subject.CommonName != "Legacy.Example.NET" || len(pair.Leaf.DNSNames)+len(pair.Leaf.IPAddresses) != 0 {
		t.Fatalf("written leaf %v, DNS %v, IPs %v", pair.Leaf.Subject, pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	if err := pair.Leaf.CheckSignatureFrom(ca.Cert()); err != nil {
		t.Fatalf("written leaf not signed by the CA: %v", err)
	}

	caFile := ca.WritePEM(t, dir, "ca.pem")
	got, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(got)
	if !bytes.Equal(got, ca.PEM()) || block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, ca.Cert().Raw) || len(rest) != 0 {
		t.Fatalf("CA file holds %q", got)
	}
	if err := ca.Cert().CheckSignatureFrom(ca.Cert()); err != nil {
		t.Fatalf("CA not self-signed: %v", err)
	}
	if !ca.Cert().IsCA || ca.Cert().Subject.CommonName != "file CA" {
		t.Fatalf("CA certificate %v, IsCA %v", ca.Cert().Subject, ca.Cert().IsCA)
	}
}
