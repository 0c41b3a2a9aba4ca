package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// modernSuites are the TLS 1.2 suites offered: forward secret AEADs only.
// TLS 1.3 suites are not configurable in crypto/tls and are all modern.
var modernSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// legacySuites are added only when a listener explicitly accepts TLS 1.0 or
// 1.1 (old desk phones): those versions have no AEAD suites.
var legacySuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// ServerConfig builds the tls.Config of a listener.
//
// minVersion 0 means TLS 1.2. TLS 1.0 and 1.1 may be asked for explicitly;
// they add the ECDHE AES-CBC-SHA suites, since those versions have nothing
// better. For TLS 1.2 only ECDHE suites with AES-GCM and ChaCha20-Poly1305
// are offered.
//
// The certificate is chosen by SNI with s.Lookup. A handshake without SNI,
// or with a name the store does not know, gets the certificate named
// defaultCert; if strict is true, or defaultCert is "", it fails instead
// with an error wrapping ErrUnknownSNI. A defaultCert the store does not
// hold is an error. nextProtos is the ALPN list, offered as given.
func ServerConfig(s *Store, defaultCert string, strict bool, minVersion uint16, nextProtos []string) (*tls.Config, error) {
	if s == nil {
		return nil, errors.New("certs: no certificate store")
	}
	var def *tls.Certificate
	if defaultCert != "" {
		c, ok := s.ByName(defaultCert)
		if !ok {
			return nil, fmt.Errorf("certs: default certificate %q is not loaded", defaultCert)
		}
		def = c
	}
	if strict {
		def = nil
	}
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	suites := modernSuites
	switch minVersion {
	case tls.VersionTLS10, tls.VersionTLS11:
		suites = append(append([]uint16(nil), modernSuites...), legacySuites...)
	case tls.VersionTLS12, tls.VersionTLS13:
	default:
		return nil, fmt.Errorf("certs: unsupported minimum TLS version %#04x", minVersion)
	}
	return &tls.Config{
		MinVersion:   minVersion,
		CipherSuites: append([]uint16(nil), suites...),
		NextProtos:   append([]string(nil), nextProtos...),
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c, ok := s.Lookup(hello.ServerName); ok {
				return c, nil
			}
			if def != nil {
				return def, nil
			}
			if hello.ServerName == "" {
				return nil, fmt.Errorf("%w: client sent no SNI", ErrUnknownSNI)
			}
			return nil, fmt.Errorf("%w: %q", ErrUnknownSNI, clip(hello.ServerName))
		},
	}, nil
}

// clip bounds an attacker-chosen name in an error message.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
