package sip

import (
	"errors"
	"strconv"
)

var (
	// ErrTruncated: the input ends before the empty line that closes the
	// head, or (Parse) before the end of the body Content-Length announces.
	ErrTruncated = errors.New("sip: truncated message")

	// ErrMalformed: the bytes are not a SIP message head this package
	// accepts (bad start line, header syntax, URI, CSeq, control
	// character, bare CR or LF, ...).
	ErrMalformed = errors.New("sip: malformed message")

	// ErrFolded: a header line starts with whitespace (obsolete line
	// folding, RFC 3261 7.3.1). Folding is refused because peers disagree
	// on what a folded line belongs to.
	ErrFolded = errors.New("sip: folded header line")

	// ErrContentLength: Content-Length is not a number below 2^31, appears
	// twice with different values, or (Framer) is missing on a stream.
	ErrContentLength = errors.New("sip: invalid Content-Length")

	// ErrDuplicate: From, To, Call-ID or CSeq appears more than once.
	ErrDuplicate = errors.New("sip: duplicated header")

	// ErrMissing: From, To, Call-ID, CSeq or Via is absent.
	ErrMissing = errors.New("sip: missing header")

	// ErrTooLong: (Framer) a message would exceed Framer.MaxMessage.
	ErrTooLong = errors.New("sip: message too long")
)

// ParseError says what is wrong with a message and where.
type ParseError struct {
	// Err is one of the package's sentinel errors.
	Err error
	// At is the offset in the input of the offending byte or of the start
	// of the offending line.
	At int
	// Msg says what was wrong, e.g. "unterminated quoted string in From".
	Msg string
}

func (e *ParseError) Error() string {
	return e.Err.Error() + ": " + e.Msg + " at offset " + strconv.Itoa(e.At)
}

// Unwrap returns Err, so errors.Is(err, ErrFolded) works.
func (e *ParseError) Unwrap() error { return e.Err }

func perr(err error, at int, msg string) error {
	return &ParseError{Err: err, At: at, Msg: msg}
}
