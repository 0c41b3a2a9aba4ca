package ldap

import (
	"errors"
	"strconv"
)

// Sentinel errors. Decoding errors come wrapped in a *DecodeError that says
// where decoding stopped; test them with errors.Is.
var (
	// ErrTooLarge: a length exceeds the configured cap. The claimed size is
	// never allocated.
	ErrTooLarge = errors.New("message too large")
	// ErrIndefiniteLength: an indefinite BER length, which LDAP forbids
	// (RFC 4511 section 5.1).
	ErrIndefiniteLength = errors.New("indefinite length")
	// ErrTruncated: an element claims more bytes than the message holds.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: the bytes are BER but not the LDAP structure expected.
	ErrMalformed = errors.New("malformed")

	// ErrRefused: the proxy refused the connection by policy (anonymous,
	// SASL or StartTLS not allowed) and answered the client.
	ErrRefused = errors.New("refused by policy")
	// ErrUnknownDomain: the bind domain routes nowhere and there is no
	// default target.
	ErrUnknownDomain = errors.New("unknown bind domain")
	// ErrIdle: neither side sent anything for the idle timeout.
	ErrIdle = errors.New("idle timeout")
)

// DecodeError says where decoding of an LDAP message failed.
type DecodeError struct {
	Place string // the element being decoded, e.g. "BindRequest name"
	Err   error  // one of the sentinels above, or a reader error
}

func (e *DecodeError) Error() string { return "ldap: decode " + e.Place + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(place string, err error) error { return &DecodeError{Place: place, Err: err} }

// tagError reports an unexpected identifier octet.
type tagError struct {
	got, want byte
}

func (e tagError) Error() string {
	return "tag 0x" + hex2(e.got) + ", want 0x" + hex2(e.want)
}

func (e tagError) Unwrap() error { return ErrMalformed }

func hex2(b byte) string {
	s := strconv.FormatUint(uint64(b), 16)
	if len(s) == 1 {
		return "0" + s
	}
	return s
}
