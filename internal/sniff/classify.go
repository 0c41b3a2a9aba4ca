package sniff

// What a request line's first word decides.
type wordClass uint8

const (
	httpOnly  wordClass = iota + 1 // HTTP at "WORD "
	sipOnly                        // SIP at "WORD "
	shared                         // HTTP or SIP, decided by the version at the end of the request line
	h2Preface                      // "PRI": the HTTP/2 preface must follow exactly
)

type firstWord struct {
	s string
	c wordClass
}

// firstWords are the case-sensitive first words of the request (or SIP
// status) lines Classify knows. A word that is not here is Unknown.
var firstWords = [...]firstWord{
	// RFC 9110 methods.
	{"GET", httpOnly}, {"HEAD", httpOnly}, {"POST", httpOnly}, {"PUT", httpOnly},
	{"DELETE", httpOnly}, {"CONNECT", httpOnly}, {"TRACE", httpOnly},
	// RFC 5789.
	{"PATCH", httpOnly},
	// WebDAV (RFC 4918), versioning REPORT (RFC 3253), CalDAV MKCALENDAR
	// (RFC 4791) and SEARCH (RFC 5323): phones and softphones fetch CardDAV
	// and CalDAV collections, whose first request is often PROPFIND or
	// REPORT.
	{"PROPFIND", httpOnly}, {"PROPPATCH", httpOnly}, {"MKCOL", httpOnly},
	{"COPY", httpOnly}, {"MOVE", httpOnly}, {"LOCK", httpOnly}, {"UNLOCK", httpOnly},
	{"REPORT", httpOnly}, {"MKCALENDAR", httpOnly}, {"SEARCH", httpOnly},
	// SIP methods (RFC 3261, 3262, 3265/6665, 3428, 3515, 3903, 6086).
	{"INVITE", sipOnly}, {"ACK", sipOnly}, {"BYE", sipOnly}, {"CANCEL", sipOnly},
	{"REGISTER", sipOnly}, {"PRACK", sipOnly}, {"SUBSCRIBE", sipOnly},
	{"NOTIFY", sipOnly}, {"PUBLISH", sipOnly}, {"INFO", sipOnly},
	{"REFER", sipOnly}, {"MESSAGE", sipOnly},
	// A SIP response's status line.
	{"SIP/2.0", sipOnly},
	// OPTIONS is in both RFC 9110 and RFC 3261; UPDATE is a SIP method
	// (RFC 3311) and a registered HTTP method (RFC 3253).
	{"OPTIONS", shared}, {"UPDATE", shared},
	{"PRI", h2Preface},
}

// maxWordLen is the length of the longest entry in firstWords.
const maxWordLen = len("MKCALENDAR")

const h2PrefaceString = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// versions end a request line that starts with a shared method.
var versions = [...]struct {
	s string
	p Proto
}{
	{"HTTP/1.1", HTTP},
	{"HTTP/1.0", HTTP},
	{"SIP/2.0", SIP},
}

// Classify inspects the bytes read so far from a client.
//
// needMore is true when b is a valid prefix of at least one known protocol
// but not yet enough to decide; p is then Unknown and the caller should read
// more (within its buffer) and call again with all the bytes. When needMore
// is false, p is final: appending bytes to b never changes it. Empty b needs
// more.
//
// Rules, all case-sensitive:
//
//   - TLS: 0x16 (handshake record), 0x03, minor version 0x00..0x04.
//   - LDAP: 0x30 (SEQUENCE), a definite length of at least 5 (short form, or
//     long form 0x81..0x84 followed by that many bytes), then 0x02 (the
//     INTEGER messageID).
//   - STUN: a first byte of 0x00 or 0x01 (the message type's top byte for
//     every method below 0x80, which all defined methods are; no other
//     protocol here starts so), then the magic cookie 0x2112A442 at bytes
//     4..7. Eight bytes decide.
//   - HTTP2: exactly the 24-byte prior-knowledge preface, at the very start.
//   - HTTP and SIP: a request line. A method only HTTP has (GET, POST, ...,
//     and the WebDAV/CalDAV methods) decides HTTP at "METHOD "; a method only
//     SIP has (INVITE, REGISTER, ...) and a SIP status line ("SIP/2.0 ")
//     decide SIP there. OPTIONS and UPDATE exist in both, so for them the
//     request line is read up to its version: " HTTP/1.0" or " HTTP/1.1"
//     decide HTTP, " SIP/2.0" decides SIP. Any other word is Unknown as soon
//     as the bytes so far cannot start a known word.
//
// Empty lines (CRLF pairs) before a request line are skipped: SIP over TCP
// clients send "\r\n\r\n" keep-alives (RFC 5626) and RFC 3261 and RFC 9112
// both tell servers to ignore CRLFs before a start line. While b holds only
// CRLFs Classify needs more; a CR not followed by LF, or a TLS, LDAP or
// HTTP/2 start after CRLFs, is Unknown. The skipped CRLFs are part of what
// the caller replays, so the handler must tolerate them as well.
func Classify(b []byte) (p Proto, needMore bool) {
	if len(b) == 0 {
		return Unknown, true
	}
	switch b[0] {
	case 0x16:
		return classifyTLS(b)
	case 0x30:
		return classifyLDAP(b)
	}
	if b[0] <= 0x01 {
		return classifySTUN(b)
	}
	return classifyText(b)
}

// stunCookie is the magic cookie of RFC 5389/8489 at bytes 4..7.
var stunCookie = [4]byte{0x21, 0x12, 0xA4, 0x42}

func classifySTUN(b []byte) (Proto, bool) {
	// b[0] is 0x00 or 0x01: a STUN message type. Bytes 2..3 are the length.
	for i := 4; i < 8; i++ {
		if i >= len(b) {
			return Unknown, true
		}
		if b[i] != stunCookie[i-4] {
			return Unknown, false
		}
	}
	return STUN, false
}

func classifyTLS(b []byte) (Proto, bool) {
	// b[0] == 0x16, a handshake record.
	if len(b) < 2 {
		return Unknown, true
	}
	if b[1] != 0x03 {
		return Unknown, false
	}
	if len(b) < 3 {
		return Unknown, true
	}
	if b[2] > 0x04 {
		return Unknown, false
	}
	return TLS, false
}

// minLDAPMessage is the shortest LDAPMessage content: a one-byte messageID
// (02 01 xx) and an empty protocolOp such as UnbindRequest (42 00).
const minLDAPMessage = 5

func classifyLDAP(b []byte) (Proto, bool) {
	// b[0] == 0x30, a constructed SEQUENCE.
	if len(b) < 2 {
		return Unknown, true
	}
	var length uint64
	i := 2
	switch l := b[1]; {
	case l < 0x80:
		length = uint64(l)
	case l >= 0x81 && l <= 0x84:
		n := int(l & 0x7f)
		if len(b) < 2+n {
			return Unknown, true
		}
		for _, c := range b[2 : 2+n] {
			length = length<<8 | uint64(c)
		}
		i = 2 + n
	default:
		// 0x80 is the indefinite form, which LDAP forbids (RFC 4511
		// section 5.1); more than four length bytes is not a real message.
		return Unknown, false
	}
	if length < minLDAPMessage {
		return Unknown, false
	}
	if len(b) <= i {
		return Unknown, true
	}
	if b[i] != 0x02 {
		return Unknown, false
	}
	return LDAP, false
}

func classifyText(b []byte) (Proto, bool) {
	i := 0
	for i < len(b) && b[i] == '\r' {
		if i+1 == len(b) {
			return Unknown, true
		}
		if b[i+1] != '\n' {
			return Unknown, false
		}
		i += 2
	}
	if i == len(b) {
		return Unknown, true
	}
	afterCRLF := i > 0

	// The first word runs up to the first SP.
	start := i
	for i < len(b) && b[i] != ' ' && i-start <= maxWordLen {
		i++
	}
	if i == len(b) {
		if isWordPrefix(b[start:]) {
			return Unknown, true
		}
		return Unknown, false
	}
	if b[i] != ' ' {
		return Unknown, false // longer than any known word
	}
	class := lookupWord(b[start:i])
	switch class {
	case httpOnly:
		return HTTP, false
	case sipOnly:
		return SIP, false
	case h2Preface:
		if afterCRLF {
			return Unknown, false
		}
		return matchLiteral(b, h2PrefaceString, HTTP2)
	case shared:
		return classifyRequestLine(b[i+1:])
	}
	return Unknown, false
}

// classifyRequestLine decides a shared method's request line from what
// follows "METHOD ": a request target (HTTP request-target or SIP
// Request-URI, neither of which may contain SP or control characters), SP,
// and the version.
func classifyRequestLine(b []byte) (Proto, bool) {
	i := 0
	for i < len(b) && b[i] > ' ' && b[i] != 0x7f {
		i++
	}
	if i == len(b) {
		return Unknown, true
	}
	if b[i] != ' ' || i == 0 {
		return Unknown, false
	}
	v := b[i+1:]
	plausible := false
	for _, ver := range versions {
		p, more := matchLiteral(v, ver.s, ver.p)
		if p != Unknown {
			return p, false
		}
		plausible = plausible || more
	}
	return Unknown, plausible
}

// matchLiteral reports p if b starts with lit, needMore if b is a proper
// prefix of lit, and Unknown otherwise.
func matchLiteral(b []byte, lit string, p Proto) (Proto, bool) {
	n := min(len(b), len(lit))
	if string(b[:n]) != lit[:n] {
		return Unknown, false
	}
	if n < len(lit) {
		return Unknown, true
	}
	return p, false
}

func lookupWord(w []byte) wordClass {
	for _, fw := range firstWords {
		if string(w) == fw.s {
			return fw.c
		}
	}
	return 0
}

func isWordPrefix(w []byte) bool {
	for _, fw := range firstWords {
		if len(w) <= len(fw.s) && string(w) == fw.s[:len(w)] {
			return true
		}
	}
	return false
}
