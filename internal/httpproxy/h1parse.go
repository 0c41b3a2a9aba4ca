package httpproxy

import (
	"bytes"
)

// This file is the HTTP/1.1 head parser of the lean path: pure functions
// over bytes, no I/O, no allocation once the field slice has grown. It is
// deliberately stricter than net/http: whatever could be read two ways by
// two HTTP implementations is refused, so that no request can mean one
// thing to the gateway and another to the backend (request smuggling).

// span is a byte range [a, b) of the buffer a head was parsed from.
type span struct{ a, b int32 }

func (s span) of(buf []byte) []byte { return buf[s.a:s.b] }
func (s span) empty() bool          { return s.a == s.b }

// Header kinds the proxy treats specially; everything else is hOther.
const (
	hOther uint8 = iota
	hHost
	hContentLength
	hTransferEncoding
	hConnection
	hKeepAlive
	hProxyConnection
	hTE
	hTrailer
	hUpgrade
	hProxyAuthenticate
	hProxyAuthorization
	hExpect
	hAuthorization
	hForwarded
	hXForwardedFor
	hXForwardedProto
	hXForwardedHost
	hXForwardedOther // any other X-Forwarded-*
	hXRealIP
)

// field is one header field line: name and value (without surrounding
// whitespace).
type field struct {
	name, value span
	kind        uint8
	dropped     bool // named by Connection: not forwarded
}

// maxConnTokens bounds the header names a Connection header may list on
// the lean path; requests naming more go to net/http.
const maxConnTokens = 16

// head is a parsed request or response head.
type head struct {
	// Request line (requests).
	method, target span
	// Status line (responses).
	status int
	reason span
	// minor is the HTTP/1 minor version; major is 1 except for the HTTP/2
	// preface ("PRI * HTTP/2.0"), which is parsed as major 2.
	major, minor int
	fields       []field

	host          int   // index of the Host field, -1 if none
	auth          int   // index of the (first) Authorization field, -1 if none
	contentLength int64 // -1 if no Content-Length
	chunked       bool  // Transfer-Encoding: chunked
	connClose     bool  // Connection: close
	connKeepAlive bool  // Connection: keep-alive
	connTooMany   bool  // Connection lists more than maxConnTokens names
	upgrade       bool  // an Upgrade field is present
	expect        bool  // an Expect field is present
	expectCont    bool  // Expect: 100-continue exactly
	teTrailers    bool  // TE lists "trailers"
	teOther       bool  // Transfer-Encoding present but not exactly "chunked"
	nConn         int
	conn          [maxConnTokens]span // names listed in Connection
}

func (h *head) reset() {
	fields := h.fields[:0]
	*h = head{fields: fields, host: -1, auth: -1, contentLength: -1}
}

// h1Error is a refusal of a malformed head: the status to answer (400 or
// 431) and why. The values are preallocated; parsing never allocates an
// error.
type h1Error struct {
	status int
	msg    string
}

func (e *h1Error) Error() string { return e.msg }

var (
	errHeadTooLarge      = &h1Error{431, "request header fields too large"}
	errRequestLine       = &h1Error{400, "malformed request line"}
	errStatusLine        = &h1Error{400, "malformed status line"}
	errBareLF            = &h1Error{400, "line ends in bare LF"}
	errBareCR            = &h1Error{400, "bare CR"}
	errObsFold           = &h1Error{400, "obsolete line folding"}
	errFieldName         = &h1Error{400, "invalid header field name"}
	errSpaceBeforeColon  = &h1Error{400, "whitespace before colon in header field"}
	errFieldValue        = &h1Error{400, "invalid header field value"}
	errMissingHost       = &h1Error{400, "missing required Host header"}
	errTooManyHosts      = &h1Error{400, "too many Host headers"}
	errBadHost           = &h1Error{400, "malformed Host header"}
	errBadContentLength  = &h1Error{400, "bad Content-Length"}
	errDupContentLength  = &h1Error{400, "conflicting Content-Length headers"}
	errBadTarget         = &h1Error{400, "malformed request target"}
	errBadTrailer        = &h1Error{400, "bad trailer key"}
	errBadTE             = &h1Error{400, "unsupported Transfer-Encoding (only a single \"chunked\")"}
	errCLAndTE           = &h1Error{400, "both Content-Length and Transfer-Encoding"}
	errChunkLine         = &h1Error{400, "malformed chunk size line"}
	errChunkSize         = &h1Error{400, "chunk size too large"}
	errChunkEnd          = &h1Error{400, "chunk data not followed by CRLF"}
	errChunkOverhead     = &h1Error{400, "chunked encoding contains too much non-data"}
	errTrailerTooLarge   = &h1Error{400, "trailer section too large"}
	errResponseTooLarge  = &h1Error{502, "response header too large"}
	errUnexpectedUpgrade = &h1Error{502, "backend switched protocols without being asked"}
	errTooMany1xx        = &h1Error{502, "too many 1xx responses"}
)

// headEnd returns the length of the head at the start of b, through the
// empty line that ends it ("\r\n\r\n", or a bare-LF variant, which the
// parser then refuses), or -1 when b holds no complete head yet. from is
// how much of b an earlier call already scanned (0 at first); scanning
// resumes a little before it so that no line end is missed.
func headEnd(b []byte, from int) int {
	i := max(from-2, 0)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		p := i + j
		if p+1 >= len(b) {
			return -1
		}
		if b[p+1] == '\n' {
			return p + 2
		}
		if b[p+1] == '\r' {
			if p+2 >= len(b) {
				return -1
			}
			if b[p+2] == '\n' {
				return p + 3
			}
		}
		i = p + 1
	}
}

// parseRequest parses a complete request head b (as delimited by headEnd)
// into h. It checks the syntax strictly and derives the message framing;
// an error is an *h1Error. The version is not judged here: h.major and
// h.minor tell the caller.
func parseRequest(b []byte, h *head) error {
	h.reset()
	if len(b) > 1<<31-1 {
		return errHeadTooLarge
	}
	i := 0
	for i < len(b) && isTchar(b[i]) {
		i++
	}
	if i == 0 || i >= len(b) || b[i] != ' ' {
		return errRequestLine
	}
	h.method = span{0, int32(i)}
	i++
	start := i
	for i < len(b) && b[i] > ' ' && b[i] < 0x7f {
		i++
	}
	if i == start || i >= len(b) || b[i] != ' ' {
		return errRequestLine
	}
	h.target = span{int32(start), int32(i)}
	if !validEscapes(b[start:i]) {
		return errBadTarget
	}
	i++
	n, ok := parseVersion(b[i:], h)
	if ok && i+n < len(b) && b[i+n] == '\n' {
		return errBareLF
	}
	if !ok || i+n+1 >= len(b) || b[i+n] != '\r' || b[i+n+1] != '\n' {
		return errRequestLine
	}
	i += n + 2
	if err := parseFields(b, i, h, true); err != nil {
		return err
	}
	return requestFraming(b, h)
}

// parseVersion parses "HTTP/d.d" at the start of b.
func parseVersion(b []byte, h *head) (int, bool) {
	if len(b) < 8 || string(b[:5]) != "HTTP/" || !isDigit(b[5]) || b[6] != '.' || !isDigit(b[7]) {
		return 0, false
	}
	h.major, h.minor = int(b[5]-'0'), int(b[7]-'0')
	return 8, true
}

// parseFields parses the header field lines of b from i to the end, which
// is the empty line. strict refuses bare LF line ends (requests); responses
// from backends get net/http's tolerance for them.
func parseFields(b []byte, i int, h *head, strict bool) error {
	for {
		if i >= len(b) {
			return errRequestLine // not reached: b ends with an empty line
		}
		switch b[i] {
		case '\r':
			if i+2 == len(b) && b[i+1] == '\n' {
				return nil
			}
			return errBareCR
		case '\n':
			if strict {
				return errBareLF
			}
			if i+1 == len(b) {
				return nil
			}
			return errBareLF
		case ' ', '\t':
			return errObsFold
		}
		ns := i
		for i < len(b) && isTchar(b[i]) {
			i++
		}
		if i >= len(b) {
			return errFieldName
		}
		if b[i] != ':' {
			if i > ns && (b[i] == ' ' || b[i] == '\t') {
				return errSpaceBeforeColon
			}
			return errFieldName
		}
		if i == ns {
			return errFieldName
		}
		ne := i
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vs := i
		for i < len(b) {
			c := b[i]
			if c == '\r' || c == '\n' {
				break
			}
			if c < ' ' && c != '\t' || c == 0x7f {
				return errFieldValue
			}
			i++
		}
		if i >= len(b) {
			return errFieldValue
		}
		ve := i
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		if b[i] == '\r' {
			if i+1 >= len(b) || b[i+1] != '\n' {
				return errBareCR
			}
			i += 2
		} else { // '\n'
			if strict {
				return errBareLF
			}
			i++
		}
		name := span{int32(ns), int32(ne)}
		h.fields = append(h.fields, field{name: name, value: span{int32(vs), int32(ve)}, kind: fieldKind(b[ns:ne])})
	}
}

// requestFraming derives the body framing and the fields the proxy acts
// on, refusing every ambiguous combination.
func requestFraming(b []byte, h *head) error {
	if err := commonFraming(b, h); err != nil {
		return err
	}
	if h.teOther {
		return errBadTE
	}
	if h.chunked && h.contentLength >= 0 {
		return errCLAndTE
	}
	for i := range h.fields {
		f := &h.fields[i]
		switch f.kind {
		case hHost:
			if h.host >= 0 {
				return errTooManyHosts
			}
			h.host = i
			if !validHost(f.value.of(b)) {
				return errBadHost
			}
		case hAuthorization:
			if h.auth < 0 {
				h.auth = i
			}
		case hUpgrade:
			h.upgrade = true
		case hExpect:
			h.expect = true
			if asciiEqualFold(f.value.of(b), "100-continue") {
				h.expectCont = true
			}
		case hTE:
			if hasToken(f.value.of(b), "trailers") {
				h.teTrailers = true
			}
		case hTrailer:
			// As net/http: a chunked message may not announce framing
			// fields as trailers.
			if h.chunked && (hasToken(f.value.of(b), "transfer-encoding") ||
				hasToken(f.value.of(b), "content-length") || hasToken(f.value.of(b), "trailer")) {
				return errBadTrailer
			}
		}
	}
	if h.host < 0 && h.major == 1 && h.minor == 1 {
		return errMissingHost
	}
	return nil
}

// commonFraming reads Content-Length, Transfer-Encoding and Connection,
// the framing shared by requests and responses.
func commonFraming(b []byte, h *head) error {
	nTE := 0
	for i := range h.fields {
		f := &h.fields[i]
		switch f.kind {
		case hContentLength:
			n, ok := parseContentLength(f.value.of(b))
			if !ok {
				return errBadContentLength
			}
			if h.contentLength >= 0 && h.contentLength != n {
				return errDupContentLength
			}
			h.contentLength = n
		case hTransferEncoding:
			nTE++
			if nTE == 1 && asciiEqualFold(f.value.of(b), "chunked") {
				h.chunked = true
			} else {
				h.chunked = false
				h.teOther = true
			}
		case hConnection:
			for a, e := int(f.value.a), int(f.value.b); a < e; {
				j := a
				for j < e && b[j] != ',' {
					j++
				}
				s, t := a, j
				a = j + 1
				for s < t && (b[s] == ' ' || b[s] == '\t') {
					s++
				}
				for t > s && (b[t-1] == ' ' || b[t-1] == '\t') {
					t--
				}
				tok := b[s:t]
				switch {
				case len(tok) == 0:
				case asciiEqualFold(tok, "close"):
					h.connClose = true
				case asciiEqualFold(tok, "keep-alive"):
					h.connKeepAlive = true
				case h.nConn == maxConnTokens:
					h.connTooMany = true
				default:
					h.conn[h.nConn] = span{int32(s), int32(t)}
					h.nConn++
				}
			}
		}
	}
	// Fields named by Connection are hop-by-hop.
	for k := 0; k < h.nConn; k++ {
		tok := h.conn[k].of(b)
		for i := range h.fields {
			if asciiEqualFoldBytes(h.fields[i].name.of(b), tok) {
				h.fields[i].dropped = true
			}
		}
	}
	return nil
}

// nextListElem returns the first element of a comma-separated list,
// trimmed, and the rest after its comma.
func nextListElem(v []byte) (elem, rest []byte) {
	if j := bytes.IndexByte(v, ','); j >= 0 {
		elem, rest = v[:j], v[j+1:]
	} else {
		elem, rest = v, nil
	}
	return trimOWS(elem), rest
}

// parseResponse parses a complete response head b into h. reqMethodHEAD
// tells whether the request was HEAD (no body whatever the framing says).
func parseResponse(b []byte, h *head) error {
	h.reset()
	n, ok := parseVersion(b, h)
	if !ok || h.major != 1 || n+4 > len(b) || b[n] != ' ' ||
		!isDigit(b[n+1]) || !isDigit(b[n+2]) || !isDigit(b[n+3]) {
		return errStatusLine
	}
	h.status = int(b[n+1]-'0')*100 + int(b[n+2]-'0')*10 + int(b[n+3]-'0')
	if h.status < 100 {
		return errStatusLine
	}
	i := n + 4
	rs := i
	if i < len(b) && b[i] == ' ' {
		i++
		rs = i
		for i < len(b) && (b[i] >= ' ' && b[i] != 0x7f || b[i] == '\t') {
			i++
		}
	}
	h.reason = span{int32(rs), int32(i)}
	switch {
	case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
		i += 2
	case i < len(b) && b[i] == '\n':
		i++
	default:
		return errStatusLine
	}
	if err := parseFields(b, i, h, false); err != nil {
		return err
	}
	return commonFraming(b, h)
}

// validEscapes reports whether every '%' in the path of target (before
// any '?') starts a two-hex-digit escape.
func validEscapes(target []byte) bool {
	for i := 0; i < len(target) && target[i] != '?'; i++ {
		if target[i] != '%' {
			continue
		}
		if i+2 >= len(target) {
			return false
		}
		if _, ok := unhex(target[i+1]); !ok {
			return false
		}
		if _, ok := unhex(target[i+2]); !ok {
			return false
		}
		i += 2
	}
	return true
}

// parseContentLength parses a Content-Length value: one or more digits,
// at most 18 (no overflow, no sign, no list).
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// fieldKind classifies a header field name.
func fieldKind(n []byte) uint8 {
	switch len(n) {
	case 2:
		if asciiEqualFold(n, "te") {
			return hTE
		}
	case 4:
		if asciiEqualFold(n, "host") {
			return hHost
		}
	case 6:
		if asciiEqualFold(n, "expect") {
			return hExpect
		}
	case 7:
		if asciiEqualFold(n, "upgrade") {
			return hUpgrade
		}
		if asciiEqualFold(n, "trailer") {
			return hTrailer
		}
	case 9:
		if asciiEqualFold(n, "forwarded") {
			return hForwarded
		}
		if asciiEqualFold(n, "x-real-ip") {
			return hXRealIP
		}
	case 10:
		if asciiEqualFold(n, "connection") {
			return hConnection
		}
		if asciiEqualFold(n, "keep-alive") {
			return hKeepAlive
		}
	case 13:
		if asciiEqualFold(n, "authorization") {
			return hAuthorization
		}
	case 14:
		if asciiEqualFold(n, "content-length") {
			return hContentLength
		}
	case 15:
		if asciiEqualFold(n, "x-forwarded-for") {
			return hXForwardedFor
		}
	case 16:
		if asciiEqualFold(n, "proxy-connection") {
			return hProxyConnection
		}
		if asciiEqualFold(n, "x-forwarded-host") {
			return hXForwardedHost
		}
	case 17:
		if asciiEqualFold(n, "transfer-encoding") {
			return hTransferEncoding
		}
		if asciiEqualFold(n, "x-forwarded-proto") {
			return hXForwardedProto
		}
	case 18:
		if asciiEqualFold(n, "proxy-authenticate") {
			return hProxyAuthenticate
		}
	case 19:
		if asciiEqualFold(n, "proxy-authorization") {
			return hProxyAuthorization
		}
	}
	if len(n) >= 12 && asciiEqualFold(n[:12], "x-forwarded-") {
		return hXForwardedOther
	}
	return hOther
}

// hopByHop reports whether a field of kind k is never forwarded (RFC 9110
// section 7.6.1, as httputil.ReverseProxy removes them). Content-Length and
// Transfer-Encoding are hop-by-hop too: the proxy writes the framing itself.
func hopByHop(k uint8) bool {
	switch k {
	case hConnection, hKeepAlive, hProxyConnection, hTE, hTrailer, hUpgrade,
		hProxyAuthenticate, hProxyAuthorization, hContentLength, hTransferEncoding:
		return true
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tcharTable marks the token characters of RFC 9110 section 5.6.2.
var tcharTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isTchar(c byte) bool { return tcharTable[c] }

// hostTable marks the bytes net/http accepts in a Host header
// (golang.org/x/net/http/httpguts.ValidHostHeader).
var hostTable = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!$%&'()*+,-.:;=[]_~" {
		t[c] = true
	}
	return t
}()

func validHost(v []byte) bool {
	for _, c := range v {
		if !hostTable[c] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiEqualFold reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if lower(b[i]) != s[i] {
			return false
		}
	}
	return true
}

func asciiEqualFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v contains the
// lower-case token tok (ignoring case).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var e []byte
		e, v = nextListElem(v)
		if asciiEqualFold(e, tok) {
			return true
		}
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// chunkParser reads a chunked body (RFC 9112 section 7.1) incrementally and
// writes it out again normalized: chunk extensions are dropped, sizes are
// rewritten in lower-case hex, trailer fields are checked like header
// fields. Whatever is not strictly valid is an error, so the receiver sees
// exactly the framing the gateway saw.
type chunkParser struct {
	state      uint8
	digits     int    // hex digits of the size read so far
	size       int64  // chunk size being read, then data bytes left
	lineLen    int    // bytes of the current size line
	excess     int64  // framing overhead beyond what the data justifies
	trailerLen int    // bytes of the trailer section so far
	maxTrailer int    // bound on trailerLen
	line       []byte // the trailer field line being read
}

const (
	csSize uint8 = iota
	csExt
	csSizeLF
	csData
	csDataCR
	csDataLF
	csTrailerStart
	csTrailerLine
	csFinalLF
	csDone
)

// maxChunkLine bounds a chunk size line with its extensions, as net/http
// does.
const maxChunkLine = 4096

func (p *chunkParser) reset(maxTrailer int) {
	line := p.line[:0]
	*p = chunkParser{maxTrailer: maxTrailer, line: line}
}

func (p *chunkParser) done() bool { return p.state == csDone }

// feed parses in and appends the normalized body to out. It returns how
// many bytes of in it consumed: all of them unless the body ended (the rest
// is the next message) or out reached limit (call again after draining it).
// data counts the body bytes (without framing) among those consumed.
func (p *chunkParser) feed(in, out []byte, limit int) (consumed int, _ []byte, data int, err error) {
	i := 0
	for i < len(in) && p.state != csDone {
		if len(out) >= limit {
			break
		}
		c := in[i]
		switch p.state {
		case csSize:
			if v, ok := unhex(c); ok {
				if p.digits == 15 {
					return i, out, data, errChunkSize
				}
				p.size = p.size<<4 | int64(v)
				p.digits++
				i++
				p.lineLen++
				continue
			}
			if p.digits == 0 {
				return i, out, data, errChunkLine
			}
			// No whitespace before ';': net/http refuses it too.
			switch c {
			case ';':
				p.state = csExt
			case '\r':
				p.state = csSizeLF
			default:
				return i, out, data, errChunkLine
			}
			i++
			p.lineLen++
		case csExt:
			switch {
			case c == '\r':
				p.state = csSizeLF
			case c == '\t' || c >= ' ' && c != 0x7f:
			default:
				return i, out, data, errChunkLine
			}
			i++
			p.lineLen++
			if p.lineLen >= maxChunkLine {
				return i, out, data, errChunkLine
			}
		case csSizeLF:
			if c != '\n' {
				return i, out, data, errBareCR
			}
			i++
			// As net/http: at most 16 bytes of overhead per chunk plus
			// twice its data, or 16 KiB in all.
			p.excess = max(p.excess+int64(p.lineLen)+2-16-2*p.size, 0)
			if p.excess > 16<<10 {
				return i, out, data, errChunkOverhead
			}
			out = appendHex(out, p.size)
			out = append(out, '\r', '\n')
			p.lineLen = 0
			p.digits = 0
			if p.size == 0 {
				p.state = csTrailerStart
			} else {
				p.state = csData
			}
		case csData:
			n := int(min(p.size, int64(len(in)-i), int64(limit-len(out))))
			out = append(out, in[i:i+n]...)
			i += n
			data += n
			p.size -= int64(n)
			if p.size == 0 {
				p.state = csDataCR
			}
		case csDataCR:
			if c != '\r' {
				return i, out, data, errChunkEnd
			}
			i++
			p.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return i, out, data, errChunkEnd
			}
			i++
			out = append(out, '\r', '\n')
			p.state = csSize
		case csTrailerStart:
			if c == '\r' {
				i++
				p.state = csFinalLF
				continue
			}
			p.line = p.line[:0]
			p.state = csTrailerLine
		case csTrailerLine:
			j := bytes.IndexByte(in[i:], '\n')
			end := len(in)
			if j >= 0 {
				end = i + j + 1
			}
			p.trailerLen += end - i
			if p.trailerLen > p.maxTrailer {
				return i, out, data, errTrailerTooLarge
			}
			p.line = append(p.line, in[i:end]...)
			i = end
			if j < 0 {
				continue
			}
			if err := checkFieldLine(p.line); err != nil {
				return i, out, data, err
			}
			out = append(out, p.line...)
			p.state = csTrailerStart
		case csFinalLF:
			if c != '\n' {
				return i, out, data, errBareCR
			}
			i++
			out = append(out, '\r', '\n')
			p.state = csDone
		}
	}
	return i, out, data, nil
}

// checkFieldLine checks one complete field line (ending in CRLF) with the
// header field rules of parseFields.
func checkFieldLine(line []byte) error {
	var h head
	var one [1]field
	h.fields = one[:0]
	// parseFields wants the empty line after the fields. Trailers are
	// rare: the copy does not matter.
	tmp := make([]byte, 0, len(line)+2)
	tmp = append(tmp, line...)
	tmp = append(tmp, '\r', '\n')
	return parseFields(tmp, 0, &h, true)
}

func appendHex(b []byte, n int64) []byte {
	const digits = "0123456789abcdef"
	if n == 0 {
		return append(b, '0')
	}
	var tmp [16]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
	}
	return append(b, tmp[i:]...)
}

// appendInt appends the decimal form of n >= 0.
func appendInt(b []byte, n int64) []byte {
	if n == 0 {
		return append(b, '0')
	}
	var tmp [20]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[i:]...)
}
