package ldap

import (
	"io"
	"math"
)

// DefaultMaxMessage is the cap for one decoded LDAP message when none is
// configured.
const DefaultMaxMessage = 64 << 10

// startTLSOID names the StartTLS extended operation (RFC 4511 section 4.14).
const startTLSOID = "1.3.6.1.4.1.1466.20037"

// noticeOfDisconnectionOID names the unsolicited notification a server sends
// before closing (RFC 4511 section 4.4.1).
const noticeOfDisconnectionOID = "1.3.6.1.4.1.1466.20036"

// ReadMessage reads exactly one BER-encoded LDAPMessage (identifier, length
// and content) from r and returns its bytes. It refuses messages whose total
// size exceeds max (ErrTooLarge, before allocating anything for the content),
// indefinite lengths (ErrIndefiniteLength) and identifiers other than
// SEQUENCE. Long-form lengths with leading zero octets are accepted. max <= 0
// selects DefaultMaxMessage.
//
// At a clean end of input before the first octet it returns io.EOF; when the
// input ends inside the message the error wraps io.ErrUnexpectedEOF. Reader
// errors (such as deadline expiry) are wrapped, so errors.Is sees them. If r
// is an io.ByteReader (a *bufio.Reader) no octet after the message is
// consumed from it; otherwise r is read one octet at a time for the header.
func ReadMessage(r io.Reader, max int) ([]byte, error) {
	if max <= 0 {
		max = DefaultMaxMessage
	}
	br, ok := r.(io.ByteReader)
	if !ok {
		br = &byteReader{r: r}
	}
	var buf [16]byte
	tag, n, hdr, err := readHeader(br, buf[:0])
	if err != nil {
		if err == io.EOF && len(hdr) == 0 {
			return nil, io.EOF
		}
		return nil, decodeErr("LDAPMessage header", err)
	}
	if tag != tagSequence {
		return nil, decodeErr("LDAPMessage", tagError{got: tag, want: tagSequence})
	}
	if n > max-len(hdr) {
		return nil, decodeErr("LDAPMessage length", ErrTooLarge)
	}
	msg := make([]byte, len(hdr)+n)
	copy(msg, hdr)
	if _, err := io.ReadFull(r, msg[len(hdr):]); err != nil {
		return nil, decodeErr("LDAPMessage content", noEOF(err))
	}
	return msg, nil
}

// byteReader reads a plain io.Reader one octet at a time, so that nothing
// beyond the header is consumed.
type byteReader struct {
	r   io.Reader
	one [1]byte
}

func (b *byteReader) ReadByte() (byte, error) {
	if _, err := io.ReadFull(b.r, b.one[:]); err != nil {
		return 0, err
	}
	return b.one[0], nil
}

// Op classifies the protocolOp of a request.
type Op uint8

const (
	// OpOther is any operation other than a bind or StartTLS.
	OpOther Op = iota
	// OpBind is a BindRequest.
	OpBind
	// OpStartTLS is an ExtendedRequest for StartTLS.
	OpStartTLS
)

// String returns a short lower-case name.
func (o Op) String() string {
	switch o {
	case OpBind:
		return "bind"
	case OpStartTLS:
		return "starttls"
	}
	return "other"
}

// AuthKind is the authentication choice of a BindRequest.
type AuthKind uint8

const (
	// AuthSimple is a simple (name and password) bind.
	AuthSimple AuthKind = iota
	// AuthSASL is a SASL bind; Request.Mechanism names the mechanism.
	AuthSASL
)

// Request is what the gateway needs of one client LDAPMessage. The password
// and SASL credentials are never kept.
type Request struct {
	MessageID int64
	Op        Op
	// Tag is the application tag number of protocolOp: 0 BindRequest,
	// 2 UnbindRequest, 3 SearchRequest, 23 ExtendedRequest and so on.
	Tag uint8

	// The fields below are set for OpBind only.

	Version int      // protocol version, 3 for LDAPv3
	Name    string   // bind name (DN, DOM\user or user@domain), as sent
	Auth    AuthKind // simple or SASL
	// Mechanism names the SASL mechanism, e.g. "GSSAPI"; "" for simple
	// binds. Microsoft's NTLM "sicily" binds (MS-ADTS 5.1.1.1) count as SASL
	// with Mechanism "sicilyPackageDiscovery", "sicilyNegotiate" or
	// "sicilyResponse".
	Mechanism string
	// Anonymous is set for a simple bind with an empty name and an empty
	// password (RFC 4513 section 5.1.1).
	Anonymous bool
}

// ParseRequest decodes one client LDAPMessage as returned by ReadMessage.
// Operations other than bind and StartTLS are checked only as far as their
// envelope (messageID and an application-class protocolOp); controls are not
// decoded. Errors are *DecodeError values naming the element that failed.
//
// ParseRequest allocates the Name string of a bind with a name; the proxy
// routes with parseRequest, which leaves the name in the message.
func ParseRequest(msg []byte) (Request, error) {
	r, name, err := parseRequest(msg)
	if err == nil && len(name) > 0 {
		r.Name = string(name)
	}
	return r, err
}

// parseRequest is ParseRequest without the Name string: it returns the bind
// name as a slice of msg instead, and allocates nothing (but for the error).
func parseRequest(msg []byte) (r Request, name []byte, err error) {
	op, id, err := parseEnvelope(msg)
	if err != nil {
		return r, nil, err
	}
	r.MessageID = id
	r.Tag = op.tag & tagNumberMask
	switch op.tag {
	case appConstructed | appBindRequest:
		r.Op = OpBind
		name, err = parseBind(op.content, &r)
	case appConstructed | appExtendedRequest:
		var oid element
		oid, _, err = expect(op.content, ctxPrimitive0, "ExtendedRequest requestName")
		if err == nil && string(oid.content) == startTLSOID {
			r.Op = OpStartTLS
		}
	}
	if err != nil {
		name = nil
	}
	return r, name, err
}

// parseBind decodes a BindRequest into r, except for the name, which it
// returns.
func parseBind(b []byte, r *Request) ([]byte, error) {
	v, b, err := expect(b, tagInteger, "BindRequest version")
	if err != nil {
		return nil, err
	}
	version, err := parseInt(v.content)
	if err != nil {
		return nil, decodeErr("BindRequest version", err)
	}
	if version < 1 || version > 127 {
		return nil, decodeErr("BindRequest version", errBigInteger)
	}
	r.Version = int(version)
	name, b, err := expect(b, tagOctetString, "BindRequest name")
	if err != nil {
		return nil, err
	}
	auth, _, err := next(b, "BindRequest authentication")
	if err != nil {
		return nil, err
	}
	switch auth.tag {
	case ctxPrimitive0:
		r.Auth = AuthSimple
		r.Anonymous = len(name.content) == 0 && len(auth.content) == 0
	case ctxConstructed3:
		r.Auth = AuthSASL
		mech, _, err := expect(auth.content, tagOctetString, "SaslCredentials mechanism")
		if err != nil {
			return nil, err
		}
		r.Mechanism = mechanismName(mech.content)
	case ctxSicilyDiscovery, ctxSicilyNegotiate, ctxSicilyResponse:
		r.Auth = AuthSASL
		r.Mechanism = sicilyMechanisms[auth.tag-ctxSicilyDiscovery]
	default:
		return nil, decodeErr("BindRequest authentication", malformedError("unsupported choice 0x"+hex2(auth.tag)))
	}
	return name.content, nil
}

// saslMechanisms are the registered SASL mechanisms clients commonly send;
// mechanismName returns these strings rather than allocating copies.
var saslMechanisms = [...]string{
	"GSSAPI", "GSS-SPNEGO", "EXTERNAL", "PLAIN", "DIGEST-MD5", "CRAM-MD5", "NTLM",
	"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "ANONYMOUS",
}

// mechanismName returns m as a string, without allocating for a common
// mechanism.
func mechanismName(m []byte) string {
	for _, s := range saslMechanisms {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

// Sicily authentication choices, [9] to [11] primitive.
const (
	ctxSicilyDiscovery = 0x89
	ctxSicilyNegotiate = 0x8a
	ctxSicilyResponse  = 0x8b
)

var sicilyMechanisms = [...]string{"sicilyPackageDiscovery", "sicilyNegotiate", "sicilyResponse"}

// intermediateBind reports whether a successful answer to a bind with this
// mechanism is only a step of a longer exchange, not a completed bind.
func intermediateBind(mechanism string) bool {
	return mechanism == sicilyMechanisms[0] || mechanism == sicilyMechanisms[1]
}

// Response is what the gateway needs of one server LDAPMessage.
type Response struct {
	MessageID int64
	// Tag is the application tag number of protocolOp: 1 BindResponse,
	// 5 SearchResultDone, 24 ExtendedResponse and so on.
	Tag    uint8
	IsBind bool // a BindResponse
	// ResultCode and Diagnostic are the LDAPResult of the response. They are
	// zero for the responses without one (SearchResultEntry,
	// SearchResultReference, IntermediateResponse).
	ResultCode int
	Diagnostic string // diagnosticMessage, as sent by the server
}

// ParseResponse decodes one server LDAPMessage as returned by ReadMessage.
// Errors are *DecodeError values naming the element that failed.
func ParseResponse(msg []byte) (Response, error) {
	var r Response
	op, id, err := parseEnvelope(msg)
	if err != nil {
		return r, err
	}
	r.MessageID = id
	r.Tag = op.tag & tagNumberMask
	r.IsBind = op.tag == appConstructed|appBindResponse
	if !hasResult(r.Tag) {
		return r, nil
	}
	if op.tag&constructedBit == 0 {
		return r, decodeErr("LDAPResult", malformedError("primitive protocolOp"))
	}
	code, b, err := expect(op.content, tagEnumerated, "LDAPResult resultCode")
	if err != nil {
		return r, err
	}
	rc, err := parseInt(code.content)
	if err != nil {
		return r, decodeErr("LDAPResult resultCode", err)
	}
	if rc < 0 || rc > math.MaxInt32 {
		return r, decodeErr("LDAPResult resultCode", errBigInteger)
	}
	r.ResultCode = int(rc)
	_, b, err = expect(b, tagOctetString, "LDAPResult matchedDN")
	if err != nil {
		return r, err
	}
	diag, _, err := expect(b, tagOctetString, "LDAPResult diagnosticMessage")
	if err != nil {
		return r, err
	}
	r.Diagnostic = string(diag.content)
	return r, nil
}

// hasResult reports whether a response protocolOp starts with an LDAPResult.
func hasResult(app uint8) bool {
	switch app {
	case appBindResponse, appSearchDone, appModifyResponse, appAddResponse, appDelResponse,
		appModDNResponse, appCompareResponse, appExtendedResponse:
		return true
	}
	return false
}

// parseEnvelope decodes the LDAPMessage SEQUENCE and messageID and returns
// the protocolOp element. Controls after protocolOp are not decoded.
func parseEnvelope(msg []byte) (element, int64, error) {
	env, rest, err := expect(msg, tagSequence, "LDAPMessage")
	if err != nil {
		return element{}, 0, err
	}
	if len(rest) != 0 {
		return element{}, 0, decodeErr("LDAPMessage", malformedError("trailing bytes"))
	}
	id, b, err := parseMessageID(env.content)
	if err != nil {
		return element{}, 0, err
	}
	op, _, err := next(b, "protocolOp")
	if err != nil {
		return element{}, 0, err
	}
	if op.tag&classMask != classApp {
		return element{}, 0, decodeErr("protocolOp", malformedError("not an application tag"))
	}
	return op, id, nil
}
