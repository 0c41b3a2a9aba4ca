package sniff

import (
	"fmt"
	"strconv"
	"strings"
)

// Proto is a protocol recognised from a connection's first bytes.
type Proto uint8

const (
	// Unknown is returned for bytes that are no protocol this package knows,
	// and alongside needMore while undecided.
	Unknown Proto = iota
	// TLS is a TLS handshake record (a ClientHello follows).
	TLS
	// HTTP is an HTTP/1.0 or HTTP/1.1 request.
	HTTP
	// HTTP2 is the HTTP/2 prior-knowledge connection preface
	// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".
	HTTP2
	// SIP is a SIP request or response over a stream transport.
	SIP
	// LDAP is an LDAPMessage (BER SEQUENCE starting with a messageID).
	LDAP
	// STUN is a STUN message (RFC 8489 header with the magic cookie): a
	// STUN or TURN client over TCP or TLS.
	STUN
)

var protoNames = [...]string{
	Unknown: "unknown",
	TLS:     "tls",
	HTTP:    "http",
	HTTP2:   "http2",
	SIP:     "sip",
	LDAP:    "ldap",
	STUN:    "stun",
}

// String returns the lower-case name used in configuration: "unknown",
// "tls", "http", "http2", "sip", "ldap" or "stun".
func (p Proto) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// ParseProto is the inverse of String. It ignores ASCII case. Callers that
// do not distinguish HTTP/2 prior knowledge from HTTP/1.x fold HTTP2 into
// HTTP themselves.
func ParseProto(s string) (Proto, error) {
	for i, name := range protoNames {
		if strings.EqualFold(s, name) {
			return Proto(i), nil
		}
	}
	return Unknown, fmt.Errorf("%w %q (want one of %s)", ErrUnknownProto, s, strings.Join(protoNames[:], ", "))
}
