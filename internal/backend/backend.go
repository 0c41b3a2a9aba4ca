// Package backend opens connections from the gateway to one backend service,
// in plain TCP or in TLS, independently of how the client reached the
// gateway (asymmetric routing: TLS outside and plain inside, or the reverse).
//
// A Dialer is built once from Options and is safe for concurrent use. Plain
// dials return the raw *net.TCPConn so the relay can splice; TLS dials
// return a *tls.Conn whose handshake, including certificate verification,
// has completed.
//
// The package does not choose backends, balance load, retry, pool
// connections or emit events: a failed Dial returns an error that names the
// address, and the caller decides what it means.
package backend

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by New.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultMinTLSVersion  = tls.VersionTLS12
)

// Options describe one backend.
type Options struct {
	// Address is the backend's host:port. Required.
	Address string
	// TLS makes Dial speak TLS to the backend.
	TLS bool
	// ServerName is sent as SNI and verified against the backend's
	// certificate. Empty means the host part of Address (an IP address is
	// then verified against the certificate's IP SANs and no SNI is sent).
	// TLS only.
	ServerName string
	// RootCAs verify the backend's certificate; nil means the system roots.
	// See LoadCAFile. TLS only.
	RootCAs *x509.CertPool
	// InsecureSkipVerify accepts any certificate the backend presents. An
	// explicit opt-in for lab backends; never the default. TLS only.
	InsecureSkipVerify bool
	// MinTLSVersion is the lowest TLS version accepted, one of the
	// tls.VersionTLS1x constants; zero means tls.VersionTLS12. TLS only.
	MinTLSVersion uint16
	// ConnectTimeout bounds the TCP connect plus, for TLS, the handshake;
	// zero means 5s.
	ConnectTimeout time.Duration
}

// Dialer connects to one backend. Create it with New.
type Dialer struct {
	address string
	timeout time.Duration
	tls     *tls.Config // nil for plain TCP
	net     net.Dialer
}

// New validates opts, applies the defaults and returns a Dialer. It has no
// side effects: nothing is dialled or resolved. Every problem is reported at
// once.
func New(opts Options) (*Dialer, error) {
	var errs []error
	host, port, err := net.SplitHostPort(opts.Address)
	switch {
	case opts.Address == "":
		errs = append(errs, errors.New("Address: required (host:port)"))
	case err != nil:
		errs = append(errs, fmt.Errorf("Address %q: %w", opts.Address, err))
	case host == "":
		errs = append(errs, fmt.Errorf("Address %q: missing host", opts.Address))
	case port == "":
		errs = append(errs, fmt.Errorf("Address %q: missing port", opts.Address))
	case strings.Trim(port, "0123456789") == "": // numeric; otherwise a service name
		if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
			errs = append(errs, fmt.Errorf("Address %q: port must be 1-65535", opts.Address))
		}
	}
	if opts.ConnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("ConnectTimeout %v: must not be negative", opts.ConnectTimeout))
	}
	if opts.TLS {
		switch opts.MinTLSVersion {
		case 0, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13:
		default:
			errs = append(errs, fmt.Errorf("MinTLSVersion %#04x: not a TLS version", opts.MinTLSVersion))
		}
	} else {
		// TLS settings on a plain backend are almost certainly a config
		// mistake: say so rather than silently dialling in clear text.
		for _, f := range []struct {
			set  bool
			name string
		}{
			{opts.ServerName != "", "ServerName"},
			{opts.RootCAs != nil, "RootCAs"},
			{opts.InsecureSkipVerify, "InsecureSkipVerify"},
			{opts.MinTLSVersion != 0, "MinTLSVersion"},
		} {
			if f.set {
				errs = append(errs, fmt.Errorf("%s: set but TLS is off", f.name))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("backend %q: %w", opts.Address, errors.Join(errs...))
	}

	d := &Dialer{
		address: opts.Address,
		timeout: opts.ConnectTimeout,
		net: net.Dialer{
			// Zero Idle/Interval/Count mean the net package defaults
			// (15s, 15s, 9): a dead backend is noticed in minutes.
			KeepAliveConfig: net.KeepAliveConfig{Enable: true},
		},
	}
	if d.timeout == 0 {
		d.timeout = DefaultConnectTimeout
	}
	if opts.TLS {
		serverName := opts.ServerName
		if serverName == "" {
			serverName = host
		}
		minVersion := opts.MinTLSVersion
		if minVersion == 0 {
			minVersion = DefaultMinTLSVersion
		}
		d.tls = &tls.Config{
			ServerName:         serverName,
			RootCAs:            opts.RootCAs,
			InsecureSkipVerify: opts.InsecureSkipVerify,
			MinVersion:         minVersion,
			ClientSessionCache: tls.NewLRUClientSessionCache(64),
		}
	}
	return d, nil
}

// Address returns the backend's host:port.
func (d *Dialer) Address() string { return d.address }

// TLS reports whether Dial speaks TLS to the backend.
func (d *Dialer) TLS() bool { return d.tls != nil }

// TLSConfig returns a copy of the client TLS configuration (server name,
// roots, minimum version, session cache), for example for an HTTP
// transport, or nil for a plain backend. Changing the copy does not change
// the Dialer.
func (d *Dialer) TLSConfig() *tls.Config {
	if d.tls == nil {
		return nil
	}
	return d.tls.Clone()
}

// Dial connects to the backend within ConnectTimeout (and ctx). A plain
// backend yields a *net.TCPConn; a TLS backend yields a *tls.Conn whose
// handshake has completed and whose certificate has been verified. TCP
// keepalive is on. Errors name the address.
func (d *Dialer) Dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := d.net.DialContext(ctx, "tcp", d.address)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", d.address, err)
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok { // cannot happen for "tcp"; do not hand out a surprise type
		c.Close()
		return nil, fmt.Errorf("backend %s: connect: unexpected %T", d.address, c)
	}
	if d.tls == nil {
		return tcp, nil
	}
	tc := tls.Client(tcp, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		tcp.Close()
		return nil, fmt.Errorf("backend %s: TLS handshake (server name %q): %w", d.address, d.tls.ServerName, err)
	}
	return tc, nil
}

// maxCAFile bounds LoadCAFile; real bundles are a few hundred KiB.
const maxCAFile = 16 << 20

// LoadCAFile reads a PEM bundle of CA certificates. Blocks other than
// CERTIFICATE are skipped; a certificate that does not parse, or a file
// without any certificate, is an error.
func LoadCAFile(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAFile+1))
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	if len(data) > maxCAFile {
		return nil, fmt.Errorf("CA file %s: larger than %d bytes", path, maxCAFile)
	}
	pool := x509.NewCertPool()
	found, blocks := 0, 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks++
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: PEM block %d: %w", path, blocks, err)
		}
		pool.AddCert(cert)
		found++
	}
	if found == 0 {
		return nil, fmt.Errorf("CA file %s: no PEM CERTIFICATE block found (%d other PEM blocks)", path, blocks)
	}
	return pool, nil
}
