package backend

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const wait = 10 * time.Second

// backendCert issues the test backend's certificate, for backend.test and
// 127.0.0.1.
func backendCert(t *testing.T, ca *testpki.CA) tls.Certificate {
	t.Helper()
	return ca.Leaf(t, "backend.test", "backend.test", "127.0.0.1")
}

// serve accepts on a loopback listener and runs handle for every
// connection until the test ends. It returns the listener's address.
func serve(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// tlsHello completes a TLS handshake, writes "hello" and closes.
func tlsHello(cfg *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(wait))
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			_, _ = tc.Write([]byte("hello"))
			_ = tc.Close()
		}
	}
}

// silent accepts and never answers, until the client goes away.
func silent(accepted chan<- struct{}) func(net.Conn) {
	return func(c net.Conn) {
		if accepted != nil {
			accepted <- struct{}{}
		}
		_ = c.SetDeadline(time.Now().Add(wait))
		_, _ = io.Copy(io.Discard, c)
	}
}

func TestDialPlain(t *testing.T) {
	addr := serve(t, func(c net.Conn) { _, _ = c.Write([]byte("plain")) })
	d, err := New(Options{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	if d.TLS() || d.TLSConfig() != nil || d.Address() != addr {
		t.Fatalf("TLS() = %v, TLSConfig() = %v, Address() = %q", d.TLS(), d.TLSConfig(), d.Address())
	}
	c, err := d.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Fatalf("plain Dial returned %T, want *net.TCPConn (the relay splices only raw sockets)", c)
	}
	checkKeepAlive(t, c.(*net.TCPConn))
	_ = c.SetReadDeadline(time.Now().Add(wait))
	if b, err := io.ReadAll(c); err != nil || string(b) != "plain" {
		t.Fatalf("read %q, %v", b, err)
	}
}

func TestDialTLS(t *testing.T) {
	good, other := testpki.New(t, "good CA"), testpki.New(t, "other CA")
	cert := backendCert(t, good)
	tests := []struct {
		name      string
		serverMax uint16 // 0: Go's default
		opts      Options
		check     func(t *testing.T, err error) // nil: Dial must succeed
	}{
		{name: "IP address as server name", opts: Options{RootCAs: good.Pool()}},
		{name: "DNS server name", opts: Options{RootCAs: good.Pool(), ServerName: "backend.test"}},
		{name: "TLS 1.2 backend", serverMax: tls.VersionTLS12, opts: Options{RootCAs: good.Pool()}},
		{name: "wrong CA", opts: Options{RootCAs: other.Pool()}, check: func(t *testing.T, err error) {
			var uae x509.UnknownAuthorityError
			if !errors.As(err, &uae) {
				t.Fatalf("want x509.UnknownAuthorityError, got %v", err)
			}
		}},
		{name: "system roots do not know the test CA", opts: Options{}, check: func(t *testing.T, err error) {
			var cve *tls.CertificateVerificationError
			if !errors.As(err, &cve) {
				t.Fatalf("want *tls.CertificateVerificationError, got %v", err)
			}
		}},
		{name: "wrong server name", opts: Options{RootCAs: good.Pool(), ServerName: "other.test"}, check: func(t *testing.T, err error) {
			var he x509.HostnameError
			if !errors.As(err, &he) || !strings.Contains(err.Error(), `"other.test"`) {
				t.Fatalf("want x509.HostnameError naming other.test, got %v", err)
			}
		}},
		{name: "insecure skip verify accepts an unknown CA", opts: Options{RootCAs: other.Pool(), InsecureSkipVerify: true}},
		{name: "backend below MinTLSVersion", serverMax: tls.VersionTLS12, opts: Options{RootCAs: good.Pool(), MinTLSVersion: tls.VersionTLS13}, check: func(t *testing.T, err error) {
			if !strings.Contains(err.Error(), "protocol version") {
				t.Fatalf("want a protocol version error, got %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := serve(t, tlsHello(&tls.Config{Certificates: []tls.Certificate{cert}, MaxVersion: tt.serverMax}))
			opts := tt.opts
			opts.Address, opts.TLS = addr, true
			d, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial(context.Background())
			if tt.check != nil {
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded, want an error")
				}
				if !strings.Contains(err.Error(), addr) {
					t.Errorf("error does not name the address %s: %v", addr, err)
				}
				tt.check(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			tc, ok := c.(*tls.Conn)
			if !ok {
				t.Fatalf("TLS Dial returned %T, want *tls.Conn", c)
			}
			st := tc.ConnectionState()
			if !st.HandshakeComplete {
				t.Fatal("handshake not complete")
			}
			if tt.serverMax != 0 && st.Version != tt.serverMax {
				t.Errorf("negotiated %#x, want %#x", st.Version, tt.serverMax)
			}
			checkKeepAlive(t, tc.NetConn().(*net.TCPConn))
			_ = c.SetReadDeadline(time.Now().Add(wait))
			if b, err := io.ReadAll(c); err != nil || string(b) != "hello" {
				t.Fatalf("read %q, %v", b, err)
			}
		})
	}
}

func TestDialDeadPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, useTLS := range []bool{false, true} {
		d, err := New(Options{Address: addr, TLS: useTLS})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c, err := d.Dial(context.Background())
		if err == nil {
			c.Close()
			t.Fatalf("TLS=%v: Dial to a closed port succeeded", useTLS)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), addr) {
			t.Errorf("TLS=%v: want connection refused naming %s, got %v", useTLS, addr, err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("TLS=%v: refused dial took %v", useTLS, el)
		}
	}
}

// A backend that accepts and never completes the handshake is bounded by
// ConnectTimeout.
func TestDialConnectTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	addr := serve(t, silent(nil))
	d, err := New(Options{Address: addr, TLS: true, ConnectTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := d.Dial(context.Background())
	el := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("Dial to a silent backend succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), addr) {
		t.Fatalf("want a deadline error naming %s, got %v", addr, err)
	}
	if el < timeout || el > DefaultConnectTimeout {
		t.Fatalf("gave up after %v, want about %v", el, timeout)
	}
}

func TestDialContextCancel(t *testing.T) {
	accepted := make(chan struct{}, 1)
	addr := serve(t, silent(accepted))
	d, err := New(Options{Address: addr, TLS: true, ConnectTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-accepted: // the handshake is now waiting on the silent backend
		case <-time.After(wait):
		}
		cancel()
	}()
	start := time.Now()
	c, err := d.Dial(ctx)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if el := time.Since(start); el >= wait {
		t.Fatalf("cancel took %v", el)
	}
}

func TestNew(t *testing.T) {
	pool := x509.NewCertPool()
	tests := []struct {
		name    string
		opts    Options
		wantErr []string // substrings; nil: valid
	}{
		{"plain", Options{Address: "10.0.0.1:389"}, nil},
		{"service name port", Options{Address: "ldap.internal:ldaps", TLS: true}, nil},
		{"ipv6", Options{Address: "[::1]:443", TLS: true, MinTLSVersion: tls.VersionTLS13}, nil},
		{"missing address", Options{}, []string{"Address: required"}},
		{"no port", Options{Address: "10.0.0.1"}, []string{"missing port in address"}},
		{"empty port", Options{Address: "10.0.0.1:"}, []string{"missing port"}},
		{"no host", Options{Address: ":80"}, []string{"missing host"}},
		{"port 0", Options{Address: "h:0"}, []string{"port must be 1-65535"}},
		{"port too big", Options{Address: "h:70000"}, []string{"port must be 1-65535"}},
		{"negative timeout", Options{Address: "h:1", ConnectTimeout: -time.Second}, []string{"ConnectTimeout"}},
		{"bad TLS version", Options{Address: "h:1", TLS: true, MinTLSVersion: 0x0399}, []string{"MinTLSVersion 0x0399"}},
		{"TLS settings without TLS", Options{Address: "h:1", ServerName: "x", RootCAs: pool, InsecureSkipVerify: true, MinTLSVersion: tls.VersionTLS13},
			[]string{"ServerName: set but TLS is off", "RootCAs: set", "InsecureSkipVerify: set", "MinTLSVersion: set"}},
		{"every problem at once", Options{Address: "h", ConnectTimeout: -1, ServerName: "x"},
			[]string{"missing port", "ConnectTimeout", "ServerName"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.opts)
			if tt.wantErr == nil {
				if err != nil || d == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaultsAndTLSConfig(t *testing.T) {
	pool := x509.NewCertPool()
	d, err := New(Options{Address: "pbx.internal:5061", TLS: true, RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if d.timeout != DefaultConnectTimeout {
		t.Errorf("timeout = %v, want %v", d.timeout, DefaultConnectTimeout)
	}
	cfg := d.TLSConfig()
	if !d.TLS() || cfg == nil {
		t.Fatal("TLS dialer without TLS config")
	}
	if cfg.ServerName != "pbx.internal" || cfg.MinVersion != tls.VersionTLS12 || cfg.RootCAs != pool || cfg.InsecureSkipVerify {
		t.Fatalf("config: ServerName %q MinVersion %#x RootCAs %p Insecure %v", cfg.ServerName, cfg.MinVersion, cfg.RootCAs, cfg.InsecureSkipVerify)
	}
	cfg.ServerName = "changed"
	if d.TLSConfig().ServerName != "pbx.internal" {
		t.Fatal("TLSConfig does not return a copy")
	}
}

func TestLoadCAFile(t *testing.T) {
	ca1, ca2 := testpki.New(t, "one"), testpki.New(t, "two")
	keyDER, err := x509.MarshalECPrivateKey(backendCert(t, ca1).PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte // nil: file absent
		trusts  []*testpki.CA
		wantErr string
	}{
		{"bundle of two", append(ca1.PEM(), ca2.PEM()...), []*testpki.CA{ca1, ca2}, ""},
		{"key and comments are skipped", append(append([]byte("# bundle\n"), keyPEM...), ca2.PEM()...), []*testpki.CA{ca2}, ""},
		{"empty", []byte{}, nil, "no PEM CERTIFICATE block found (0 other"},
		{"key only", keyPEM, nil, "no PEM CERTIFICATE block found (1 other"},
		{"DER, not PEM", ca1.Cert().Raw, nil, "no PEM CERTIFICATE block"},
		{"broken certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), nil, "PEM block 1"},
		{"missing", nil, nil, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name+".pem")
			if tt.content != nil {
				if err := os.WriteFile(path, tt.content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pool, err := LoadCAFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err = %v, want one containing %q and the path", err, tt.wantErr)
				}
				if tt.content == nil && !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("err = %v, want fs.ErrNotExist", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []*testpki.CA{ca1, ca2} {
				_, verr := backendCert(t, c).Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "backend.test"})
				trusted := false
				for _, want := range tt.trusts {
					trusted = trusted || want == c
				}
				if (verr == nil) != trusted {
					t.Errorf("CA %q: verify error %v, want trusted=%v", c.Cert().Subject.CommonName, verr, trusted)
				}
			}
		})
	}
}
