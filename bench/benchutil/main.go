// Command benchutil holds the small helpers of bench/run.sh:
//
//	benchutil ports N          print N free loopback TCP ports, one a line
//	benchutil cert DIR         write a throw-away ECDSA P-256 certificate for
//	                           localhost/127.0.0.1: DIR/cert.pem, DIR/key.pem and
//	                           DIR/combined.pem (certificate + key, for HAProxy)
//	benchutil report RAW TXT JSON
//	                           read the key=value results RAW, print the summary
//	                           table to stdout and TXT, write the summary JSON
//
// It is part of the benchmark harness, not of pbxgate.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("benchutil: ")
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch args := os.Args[2:]; os.Args[1] {
	case "ports":
		if len(args) != 1 {
			usage()
		}
		err = ports(args[0])
	case "cert":
		if len(args) != 1 {
			usage()
		}
		err = cert(args[0])
	case "report":
		if len(args) != 3 {
			usage()
		}
		err = report(os.Stdout, args[0], args[1], args[2])
	default:
		usage()
	}
	if err != nil {
		log.Fatal(err)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchutil ports N | cert DIR | report RAW TXT JSON")
	os.Exit(2)
}

// ports holds n listeners open at once so the ports differ, prints them and
// closes them. Another process may take a port before the caller binds it;
// the script then fails loudly at that bind.
func ports(arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil || n <= 0 || n > 100 {
		return fmt.Errorf("ports: N must be 1..100, got %q", arg)
	}
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

func cert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"pbxgate benchmark"}},
		DNSNames:              []string{"localhost", "bench.local"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o644),
		os.WriteFile(filepath.Join(dir, "key.pem"), keyPEM, 0o600),
		os.WriteFile(filepath.Join(dir, "combined.pem"), append(certPEM, keyPEM...), 0o600),
	)
}
