// Package sniff classifies the first bytes a client sends on a TCP
// connection so a listener can hand the connection to the right protocol
// handler and then replay those bytes to it.
//
// Classify looks at a byte prefix and says TLS, HTTP/1.x, HTTP/2 with prior
// knowledge, SIP or LDAP, or that it needs more bytes, or that the bytes are
// nothing it knows. It decides on as few bytes as the protocols allow: three
// bytes for a TLS record header, the BER header and messageID tag for LDAP,
// "METHOD " for a method unique to HTTP or SIP, the whole request line up to
// the version for a method both protocols share (OPTIONS, UPDATE), and the
// whole 24-byte preface for HTTP/2. ServerName extracts the SNI host name
// from a TLS ClientHello without terminating TLS. Read drives Classify over
// an io.Reader, reading no further than the decision needs.
//
// Classify and ServerName are pure, never panic on any input and do not
// allocate (ServerName allocates only the error it returns for malformed
// input).
//
// The package does not terminate TLS, does not validate or parse whole
// requests (headers, bodies, LDAP operations, the rest of a ClientHello
// beyond what SNI needs), does not normalise or validate host names, does
// not set deadlines and does not log or emit events: the listener owns the
// connection, the deadline and the policy for what to do with the answer.
package sniff
