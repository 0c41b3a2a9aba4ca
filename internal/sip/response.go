package sip

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
)

// Errors of AppendResponse. They are returned wrapped with detail; test
// with errors.Is.
var (
	// ErrNoResponse: the message is a response or an ACK; neither is
	// answered (RFC 3261 17.2.1, 8.2.6).
	ErrNoResponse = errors.New("sip: no response is due")

	// ErrResponseArg: a status code outside 100-699, a reason phrase that
	// is not printable ASCII, a missing or non-token To tag, or a request
	// buffer that does not match the parsed Message.
	ErrResponseArg = errors.New("sip: invalid response argument")
)

// ReasonPhrase returns the RFC 3261 (section 21) reason phrase of a
// common status code, or "" when the code is not one of them.
func ReasonPhrase(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 183:
		return "Session Progress"
	case 200:
		return "OK"
	case 202:
		return "Accepted"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 413:
		return "Request Entity Too Large"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Unsupported URI Scheme"
	case 420:
		return "Bad Extension"
	case 423:
		return "Interval Too Brief"
	case 480:
		return "Temporarily Unavailable"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 484:
		return "Address Incomplete"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 500:
		return "Server Internal Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Server Time-out"
	case 505:
		return "Version Not Supported"
	case 513:
		return "Message Too Large"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	case 604:
		return "Does Not Exist Anywhere"
	case 606:
		return "Not Acceptable"
	}
	return ""
}

// classPhrase is the reason phrase used for a code ReasonPhrase does not
// know, so that a response never has an empty phrase.
func classPhrase(code int) string {
	switch code / 100 {
	case 1:
		return "Provisional"
	case 2:
		return "Success"
	case 3:
		return "Redirection"
	case 4:
		return "Client Error"
	case 5:
		return "Server Error"
	}
	return "Global Failure"
}

// AppendResponse appends to dst a complete SIP response (head only,
// Content-Length: 0) with the given status to the request req, which Parse
// has read into m, and returns the extended buffer.
//
// The response copies, as RFC 3261 8.2.6.2 requires, every Via header of
// the request in order (comma-joined values stay joined) and the From,
// Call-ID and CSeq headers; header names are kept as written (compact
// forms included) and surrounding whitespace of values is dropped. To is
// copied too and, when it has no tag, ";tag=" and toTag are appended
// (NewTag makes one); toTag is then required except for 100 Trying and
// must be a token. Nothing else is added: no Server or other header that
// tells what answers, no received/rport Via parameters (the caller sends
// the response to the packet's source address). Callers that need more
// headers (WWW-Authenticate, Retry-After) can insert them before the final
// CRLF.
//
// status must be 100-699 and reason printable ASCII (0x20-0x7e); an empty
// reason is replaced by ReasonPhrase(status) or, for codes it does not
// know, a generic phrase of the class. Responses and ACK requests are not
// answered: the error then wraps ErrNoResponse; bad arguments give errors
// wrapping ErrResponseArg. AppendResponse does not allocate when dst has
// room for the response and then returns dst unchanged on error.
func AppendResponse(dst []byte, req []byte, m *Message, status int, reason string, toTag []byte) ([]byte, error) {
	if m == nil || !m.Request {
		return dst, fmt.Errorf("%w: the message is a response", ErrNoResponse)
	}
	if string(m.Method) == "ACK" {
		return dst, fmt.Errorf("%w: ACK gets no response", ErrNoResponse)
	}
	if status < 100 || status > 699 {
		return dst, fmt.Errorf("%w: status %d outside 100-699", ErrResponseArg, status)
	}
	for i := 0; i < len(reason); i++ {
		if c := reason[i]; c < 0x20 || c > 0x7e {
			return dst, fmt.Errorf("%w: reason phrase has byte %#x at %d", ErrResponseArg, c, i)
		}
	}
	if reason == "" {
		if reason = ReasonPhrase(status); reason == "" {
			reason = classPhrase(status)
		}
	}
	addTag := m.To.Tag == nil && (len(toTag) > 0 || status != 100)
	if addTag && !isTokenBytes(toTag) {
		return dst, fmt.Errorf("%w: To has no tag and toTag %q is not a token", ErrResponseArg, toTag)
	}
	if m.HeaderLen <= 0 || m.HeaderLen > len(req) {
		return dst, fmt.Errorf("%w: HeaderLen %d does not fit the %d-byte request", ErrResponseArg, m.HeaderLen, len(req))
	}

	start := len(dst)
	dst = append(dst, "SIP/2.0 "...)
	dst = append(dst, byte('0'+status/100), byte('0'+status/10%10), byte('0'+status%10), ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)

	// One pass over the head: Via lines are appended as they come, the
	// others remembered and appended after them.
	var from, to, callID, cseq header
	vias := 0
	head := req[:m.HeaderLen]
	_, pos := crlfLine(head, 0) // skip the request line
	for pos < len(head) {
		line, next := crlfLine(head, pos)
		pos = next
		if len(line) == 0 { // the empty line ending the head
			break
		}
		switch line[0] | 0x20 { // cheap pre-filter on the name's first letter
		case 'v', 'f', 't', 'c', 'i':
		default:
			continue
		}
		h, ok := splitHeader(line)
		if !ok {
			continue
		}
		switch {
		case eqFold(h.name, "via") || eqFold(h.name, "v"):
			dst = h.append(dst)
			vias++
		case eqFold(h.name, "from") || eqFold(h.name, "f"):
			from = h
		case eqFold(h.name, "to") || eqFold(h.name, "t"):
			to = h
		case eqFold(h.name, "call-id") || eqFold(h.name, "i"):
			callID = h
		case eqFold(h.name, "cseq"):
			cseq = h
		}
	}
	if vias == 0 || from.name == nil || to.name == nil || callID.name == nil || cseq.name == nil {
		return dst[:start], fmt.Errorf("%w: request buffer lacks Via, From, To, Call-ID or CSeq; was it parsed into this Message?", ErrResponseArg)
	}
	dst = from.append(dst)
	dst = append(dst, to.name...)
	dst = append(dst, ": "...)
	dst = append(dst, to.value...)
	if addTag {
		dst = append(dst, ";tag="...)
		dst = append(dst, toTag...)
	}
	dst = append(dst, "\r\n"...)
	dst = callID.append(dst)
	dst = cseq.append(dst)
	dst = append(dst, "Content-Length: 0\r\n\r\n"...)
	return dst, nil
}

// header is one header line split into its name and trimmed value.
type header struct{ name, value []byte }

func (h header) append(dst []byte) []byte {
	dst = append(dst, h.name...)
	dst = append(dst, ": "...)
	dst = append(dst, h.value...)
	return append(dst, "\r\n"...)
}

// splitHeader splits "name LWS : value" as Message.header does.
func splitHeader(line []byte) (header, bool) {
	i := 0
	for i < len(line) && isToken(line[i]) {
		i++
	}
	name := line[:i]
	i = skipLWS(line, i)
	if len(name) == 0 || i == len(line) || line[i] != ':' {
		return header{}, false
	}
	return header{name: name, value: trimLWS(line[i+1:])}, true
}

// crlfLine returns the line of b starting at pos without its CRLF and the
// offset after the CRLF (or len(b) when there is none).
func crlfLine(b []byte, pos int) (line []byte, next int) {
	if i := bytes.Index(b[pos:], crlf); i >= 0 {
		return b[pos : pos+i], pos + i + 2
	}
	return b[pos:], len(b)
}

var crlf = []byte("\r\n")

// tagAlphabet is RFC 4648 base32 in lower case: 16 characters carry 80
// random bits, well above the 32 RFC 3261 19.3 asks of a tag.
const tagAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// TagLen is the number of characters NewTag appends.
const TagLen = 16

// NewTag appends a random To tag of TagLen lower-case base32 characters
// from crypto/rand to dst and returns the extended buffer. It allocates
// only when dst lacks room.
func NewTag(dst []byte) []byte {
	// The random bytes are read straight into dst's spare room and mapped
	// in place, so no temporary buffer can escape to the heap.
	dst = slices.Grow(dst, TagLen)
	n := len(dst)
	dst = dst[:n+TagLen]
	r := dst[n:]
	// crypto/rand.Read never returns an error (Go 1.24+): it crashes the
	// program rather than return predictable bytes.
	_, _ = rand.Read(r)
	for i, c := range r {
		r[i] = tagAlphabet[c&31]
	}
	return dst
}
