package sniff

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// needBinary fails the test when an external client is missing.
func needBinary(t *testing.T, bin, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("needs %s (apt-get install -y %s)", bin, pkg)
	}
	return path
}

// TestRealClients sniffs the first flight of real clients (curl with
// OpenSSL and nghttp2, OpenLDAP's ldapsearch) on loopback.
func TestRealClients(t *testing.T) {
	curl := needBinary(t, "curl", "curl")
	ldapsearch := needBinary(t, "ldapsearch", "ldap-utils")
	tests := []struct {
		name string
		cmd  func(port string) []string
		want Proto
		sni  string
	}{
		{"curl http get", func(port string) []string {
			return []string{curl, "-s", "http://127.0.0.1:" + port + "/"}
		}, HTTP, ""},
		{"curl http options", func(port string) []string {
			return []string{curl, "-s", "-X", "OPTIONS", "http://127.0.0.1:" + port + "/x"}
		}, HTTP, ""},
		{"curl webdav propfind", func(port string) []string {
			return []string{curl, "-s", "-X", "PROPFIND", "-H", "Depth: 1", "http://127.0.0.1:" + port + "/dav/"}
		}, HTTP, ""},
		{"curl h2 prior knowledge", func(port string) []string {
			return []string{curl, "-s", "--http2-prior-knowledge", "http://127.0.0.1:" + port + "/"}
		}, HTTP2, ""},
		{"curl https sni", func(port string) []string {
			return []string{curl, "-sk", "--resolve", "prov.example.test:" + port + ":127.0.0.1", "https://prov.example.test:" + port + "/"}
		}, TLS, "prov.example.test"},
		{"curl https tls1.2 sni", func(port string) []string {
			return []string{curl, "-sk", "--tlsv1.2", "--tls-max", "1.2", "--resolve", "pbx.example.test:" + port + ":127.0.0.1", "https://pbx.example.test:" + port + "/"}
		}, TLS, "pbx.example.test"},
		{"curl https ip no sni", func(port string) []string {
			return []string{curl, "-sk", "https://127.0.0.1:" + port + "/"}
		}, TLS, ""},
		{"ldapsearch anonymous", func(port string) []string {
			return []string{ldapsearch, "-x", "-H", "ldap://127.0.0.1:" + port, "-b", "", "-s", "base"}
		}, LDAP, ""},
		{"ldapsearch simple bind", func(port string) []string {
			return []string{ldapsearch, "-x", "-H", "ldap://127.0.0.1:" + port, "-D", `EXAMPLE\alice`, "-w", "secret", "-b", "dc=example,dc=com"}
		}, LDAP, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := tt.cmd(port)
			cmd := exec.CommandContext(ctx, args[0], args[1:]...)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "LDAPNOINIT=1"} // no proxies, no ldaprc
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = cmd.Wait() }() // the client exits once conn closes

			if err := ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			conn, err := ln.Accept()
			if err != nil {
				t.Fatalf("accept: %v (client stderr: %s)", err, stderr.String())
			}
			defer conn.Close()
			if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			name, p := sniffTLSName(t, conn, make([]byte, 8192))
			if p != tt.want || name != tt.sni {
				t.Fatalf("got %v, SNI %q; want %v, SNI %q", p, name, tt.want, tt.sni)
			}
		})
	}
}
