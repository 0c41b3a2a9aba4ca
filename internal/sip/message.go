package sip

import "bytes"

// Addr is what the gateway needs from a From or To header (or a
// Request-URI): the URI's user and host and the tag parameter. All fields
// alias the parsed buffer and are nil when absent.
type Addr struct {
	// User is the user part of a sip: or sips: URI as written (percent
	// escapes kept, password dropped), or the number of a tel: URI.
	User []byte
	// Host is the host of a sip: or sips: URI without port, an IPv6
	// address without its brackets; nil for other schemes.
	Host []byte
	// Tag is the value of the tag parameter of From or To. A To tag marks
	// an in-dialog request.
	Tag []byte
}

// Message is a view into a SIP message head held in a caller's buffer.
// Byte-slice fields are sub-slices of that buffer, nothing is copied, and
// they are valid only as long as the buffer is. A nil slice means absent.
type Message struct {
	// Request is true for a request, false for a response.
	Request bool
	// Method and RequestURI are the request line's method (case-sensitive,
	// as written) and Request-URI; nil for responses.
	Method     []byte
	RequestURI []byte
	// Target holds the user and host of a sip:, sips: or tel: Request-URI
	// (Tag is always nil).
	Target Addr
	// Status is the status code of a response (100-699), 0 for requests.
	Status int

	From, To Addr
	CallID   []byte
	// CSeq is the CSeq sequence number (below 2^31), CSeqMethod its method.
	CSeq       uint32
	CSeqMethod []byte
	// Via is the top Via value: the first value of the first Via header,
	// trimmed, e.g. "SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK776".
	Via []byte
	// UserAgent is the value of the first User-Agent header.
	UserAgent []byte
	// AuthUser is the Digest username of the first Authorization or
	// Proxy-Authorization header that has one, without quotes and with
	// backslash escapes kept.
	AuthUser []byte
	// ContentLength is the Content-Length value, -1 when absent.
	ContentLength int
	// HeaderLen is the length of the head including the empty line; the
	// body starts there.
	HeaderLen int
}

// RoutingDomain returns the host that selects the service for a request:
// the From-URI host, or the Request-URI host when From has none (a tel:
// URI). It returns nil for responses and when neither URI has a host. The
// caller compares it case-insensitively.
func (m *Message) RoutingDomain() []byte {
	if !m.Request {
		return nil
	}
	if m.From.Host != nil {
		return m.From.Host
	}
	return m.Target.Host
}

// maxScalar bounds CSeq and Content-Length (RFC 3261 8.1.1.5: below 2^31).
const maxScalar = 1<<31 - 1

// header bits for duplicate and presence checks.
const (
	hFrom uint8 = 1 << iota
	hTo
	hCallID
	hCSeq
	hVia
	hUA
	hCL
)

// Parse reads the head of the one SIP message at the start of b – a UDP
// datagram or a message cut out by Framer.Next – into m, overwriting all of
// m. Bytes after the head are the body; Parse checks that there are at least
// Content-Length of them (more are allowed: RFC 3261 18.3 says to ignore
// them on datagrams). Leading CRLFs are not skipped: on a stream Framer
// reports them as keep-alives. Parse does not allocate unless it returns an
// error, which is then a *ParseError wrapping one of the package's
// sentinels; m is meaningful only when the error is nil.
func Parse(b []byte, m *Message) error {
	if err := parse(b, m); err != nil {
		return err
	}
	if m.ContentLength > len(b)-m.HeaderLen {
		return perr(ErrTruncated, len(b), "body shorter than Content-Length")
	}
	return nil
}

// parse is Parse without the body check; Framer.Next uses it on heads.
func parse(b []byte, m *Message) error {
	*m = Message{ContentLength: -1}
	line, pos, err := nextLine(b, 0)
	if err != nil {
		return err
	}
	if err := m.startLine(line); err != nil {
		return err
	}
	var seen uint8
	for {
		start := pos
		line, pos, err = nextLine(b, pos)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			m.HeaderLen = pos
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return perr(ErrFolded, start, "header line starts with whitespace (obsolete line folding)")
		}
		if pos < len(b) && (b[pos] == ' ' || b[pos] == '\t') {
			// Report the folding rather than the cut-off value.
			return perr(ErrFolded, pos, "header line starts with whitespace (obsolete line folding)")
		}
		if err := m.header(line, start, &seen); err != nil {
			return err
		}
	}
	for _, h := range [...]struct {
		bit  uint8
		name string
	}{{hFrom, "no From header"}, {hTo, "no To header"}, {hCallID, "no Call-ID header"}, {hCSeq, "no CSeq header"}, {hVia, "no Via header"}} {
		if seen&h.bit == 0 {
			return perr(ErrMissing, m.HeaderLen, h.name)
		}
	}
	if m.Request && !bytes.Equal(m.Method, m.CSeqMethod) {
		return perr(ErrMalformed, 0, "CSeq method differs from request method")
	}
	return nil
}

// nextLine returns the line starting at pos without its CRLF and the offset
// after the CRLF. It refuses control characters other than HTAB and CR or
// LF that are not a CRLF pair.
func nextLine(b []byte, pos int) (line []byte, next int, err error) {
	for i := pos; i < len(b); i++ {
		c := b[i]
		if c >= 0x20 && c != 0x7f || c == '\t' {
			continue
		}
		switch c {
		case '\r':
			if i+1 == len(b) {
				return nil, 0, perr(ErrTruncated, i, "head not terminated by an empty line")
			}
			if b[i+1] != '\n' {
				return nil, 0, perr(ErrMalformed, i, "CR not followed by LF")
			}
			return b[pos:i], i + 2, nil
		case '\n':
			return nil, 0, perr(ErrMalformed, i, "LF not preceded by CR")
		default:
			return nil, 0, perr(ErrMalformed, i, "control character in head")
		}
	}
	return nil, 0, perr(ErrTruncated, len(b), "head not terminated by an empty line")
}

var version = []byte("SIP/2.0")

func (m *Message) startLine(line []byte) error {
	if len(line) > len(version) && bytes.HasPrefix(line, version) && line[len(version)] == ' ' {
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase; an
		// empty reason (RFC 4475 noreason) and a missing SP before it are
		// accepted.
		code := line[len(version)+1:]
		if len(code) < 3 || !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || len(code) > 3 && code[3] != ' ' {
			return perr(ErrMalformed, len(version)+1, "status code is not three digits")
		}
		m.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
		if m.Status < 100 || m.Status > 699 {
			return perr(ErrMalformed, len(version)+1, "status code out of range")
		}
		return nil
	}
	// Request-Line = Method SP Request-URI SP SIP-Version, single spaces.
	m.Request = true
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isTokenBytes(line[:sp]) {
		return perr(ErrMalformed, 0, "request line: bad method")
	}
	m.Method = line[:sp]
	rest := line[sp+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return perr(ErrMalformed, sp+1, "request line: bad Request-URI")
	}
	m.RequestURI = rest[:sp2]
	if !bytes.Equal(rest[sp2+1:], version) {
		return perr(ErrMalformed, sp+sp2+2, "request line: version is not SIP/2.0")
	}
	user, host, msg := parseURI(m.RequestURI)
	if msg != "" {
		return perr(ErrMalformed, sp+1, "Request-URI: "+msg)
	}
	if host != nil && bytes.IndexByte(m.RequestURI[bytes.IndexByte(m.RequestURI, '@')+1:], '?') >= 0 {
		return perr(ErrMalformed, sp+1, "Request-URI: SIP URI with headers (RFC 3261 19.1.5)")
	}
	m.Target = Addr{User: user, Host: host}
	return nil
}

// header handles one header line starting at offset at.
func (m *Message) header(line []byte, at int, seen *uint8) error {
	i := 0
	for i < len(line) && isToken(line[i]) {
		i++
	}
	name := line[:i]
	for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
		i++
	}
	if len(name) == 0 || i == len(line) || line[i] != ':' {
		return perr(ErrMalformed, at, "header line without name and colon")
	}
	v := trimLWS(line[i+1:])

	once := func(bit uint8, what string) error {
		if *seen&bit != 0 {
			return perr(ErrDuplicate, at, what)
		}
		*seen |= bit
		return nil
	}
	switch {
	case eqFold(name, "from") || eqFold(name, "f"):
		if err := once(hFrom, "second From header"); err != nil {
			return err
		}
		if msg := parseNameAddr(v, &m.From); msg != "" {
			return perr(ErrMalformed, at, "From: "+msg)
		}
	case eqFold(name, "to") || eqFold(name, "t"):
		if err := once(hTo, "second To header"); err != nil {
			return err
		}
		if msg := parseNameAddr(v, &m.To); msg != "" {
			return perr(ErrMalformed, at, "To: "+msg)
		}
	case eqFold(name, "call-id") || eqFold(name, "i"):
		if err := once(hCallID, "second Call-ID header"); err != nil {
			return err
		}
		if len(v) == 0 || bytes.IndexByte(v, ' ') >= 0 || bytes.IndexByte(v, '\t') >= 0 {
			return perr(ErrMalformed, at, "Call-ID: empty or contains whitespace")
		}
		m.CallID = v
	case eqFold(name, "cseq"):
		if err := once(hCSeq, "second CSeq header"); err != nil {
			return err
		}
		n, j, ok := scalar(v)
		if !ok || j == len(v) || (v[j] != ' ' && v[j] != '\t') {
			return perr(ErrMalformed, at, "CSeq: bad sequence number")
		}
		meth := trimLWS(v[j:])
		if !isTokenBytes(meth) {
			return perr(ErrMalformed, at, "CSeq: bad method")
		}
		m.CSeq, m.CSeqMethod = uint32(n), meth
	case eqFold(name, "via") || eqFold(name, "v"):
		if *seen&hVia != 0 {
			return nil
		}
		*seen |= hVia
		top, ok := firstValue(v)
		if !ok {
			return perr(ErrMalformed, at, "Via: unterminated quoted string")
		}
		if msg := checkVia(top); msg != "" {
			return perr(ErrMalformed, at, "Via: "+msg)
		}
		m.Via = top
	case eqFold(name, "content-length") || eqFold(name, "l"):
		n, j, ok := scalar(v)
		if !ok || j != len(v) {
			return perr(ErrContentLength, at, "not a number below 2^31")
		}
		if *seen&hCL != 0 && n != m.ContentLength {
			return perr(ErrContentLength, at, "second Content-Length with a different value")
		}
		*seen |= hCL
		m.ContentLength = n
	case eqFold(name, "user-agent"):
		if *seen&hUA == 0 {
			*seen |= hUA
			m.UserAgent = v
		}
	case eqFold(name, "authorization") || eqFold(name, "proxy-authorization"):
		user, msg := digestUser(v)
		if msg != "" {
			return perr(ErrMalformed, at, "Authorization: "+msg)
		}
		if m.AuthUser == nil {
			m.AuthUser = user
		}
	}
	return nil
}
