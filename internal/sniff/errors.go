package sniff

import (
	"errors"
	"strconv"
)

var (
	// ErrTooLong is returned by Read when the buffer filled up while the bytes
	// were still a plausible prefix of a known protocol.
	ErrTooLong = errors.New("sniff: undecided when buffer was full")

	// ErrMalformed is wrapped by every DecodeError that reports bytes which
	// cannot be a valid TLS ClientHello.
	ErrMalformed = errors.New("malformed TLS ClientHello")

	// ErrNameSplit is wrapped by the DecodeError ServerName returns when the
	// host_name is valid but split across two TLS records. ServerName returns
	// names that alias its input and cannot join the pieces without
	// allocating; callers that terminate TLS can still learn the name from
	// crypto/tls (tls.ClientHelloInfo.ServerName).
	ErrNameSplit = errors.New("host_name split across TLS records (unsupported)")

	// ErrUnknownProto is returned by ParseProto for a name it does not know.
	ErrUnknownProto = errors.New("sniff: unknown protocol name")

	// errBadRead reports an io.Reader that broke its contract.
	errBadRead = errors.New("sniff: reader returned an invalid count")
)

// DecodeError reports where ServerName found a malformed ClientHello.
type DecodeError struct {
	// Place names the field being decoded, e.g. "cipher_suites" or
	// "record length".
	Place string
	// Offset is the offset in the input of the byte (or record header) where
	// decoding failed.
	Offset int
	// Err is ErrMalformed or ErrNameSplit; Msg says what was wrong.
	Err error
	Msg string
}

func (e *DecodeError) Error() string {
	return "sniff: " + e.Err.Error() + ": " + e.Place + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Unwrap returns Err, so errors.Is(err, ErrMalformed) works.
func (e *DecodeError) Unwrap() error { return e.Err }
