package ldap

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Builders for test messages, encoded by asn1-ber the way go-ldap does.

func envelope(id int64, op *ber.Packet, extra ...*ber.Packet) []byte {
	m := ber.NewSequence("LDAPMessage")
	m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	m.AppendChild(op)
	for _, e := range extra {
		m.AppendChild(e)
	}
	return m.Bytes()
}

func bindOp(version int64, name string, auth *ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 0, nil, "BindRequest")
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, version, "version"))
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, "name"))
	if auth != nil {
		op.AppendChild(auth)
	}
	return op
}

func simple(pw string) *ber.Packet {
	return ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, pw, "simple")
}

func sasl(mech string, creds ...string) *ber.Packet {
	p := ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "sasl")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, mech, "mechanism"))
	for _, c := range creds {
		p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, c, "credentials"))
	}
	return p
}

func bindMsg(id int64, name, pw string) []byte { return envelope(id, bindOp(3, name, simple(pw))) }

func extendedOp(oid string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 23, nil, "ExtendedRequest")
	op.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, oid, "requestName"))
	return op
}

func searchOp(base string) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, 3, nil, "SearchRequest")
	op.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, base, "base"))
	op.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 2, "scope"))
	return op
}

func controls() *ber.Packet {
	c := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "controls")
	ctl := ber.NewSequence("control")
	ctl.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "1.2.840.113556.1.4.319", "type"))
	c.AppendChild(ctl)
	return c
}

// longForm re-encodes every element of a BER message with four-octet
// long-form lengths, the way Windows clients send them (0x84 ...).
func longForm(t testing.TB, b []byte) []byte {
	t.Helper()
	var out []byte
	for len(b) > 0 {
		e, rest, err := next(b, "test")
		if err != nil {
			t.Fatalf("longForm: %v", err)
		}
		content := e.content
		if e.tag&constructedBit != 0 {
			content = longForm(t, content)
		}
		n := len(content)
		out = append(out, e.tag, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		out = append(out, content...)
		b = rest
	}
	return out
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want Request
	}{
		{"simple DN", bindMsg(1, "cn=admin,dc=example,dc=com", "secret"),
			Request{MessageID: 1, Op: OpBind, Version: 3, Name: "cn=admin,dc=example,dc=com", Auth: AuthSimple}},
		{"simple down-level", bindMsg(7, `EXAMPLE\bob`, "pw"),
			Request{MessageID: 7, Op: OpBind, Version: 3, Name: `EXAMPLE\bob`, Auth: AuthSimple}},
		{"LDAPv2", envelope(2, bindOp(2, "u@x.org", simple("pw"))),
			Request{MessageID: 2, Op: OpBind, Version: 2, Name: "u@x.org", Auth: AuthSimple}},
		{"anonymous", bindMsg(1, "", ""),
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSimple, Anonymous: true}},
		{"unauthenticated: name without password is not anonymous", bindMsg(1, "u@x.org", ""),
			Request{MessageID: 1, Op: OpBind, Version: 3, Name: "u@x.org", Auth: AuthSimple}},
		{"password without name is not anonymous", bindMsg(1, "", "pw"),
			Request{MessageID: 1, Op: OpBind, Version: 3, Auth: AuthSimple}},
		{"SASL EXTERNAL", envelope(3, bindOp(3, "", sasl("EXTERNAL"))),
			Request{MessageID: 3, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "EXTERNAL"}},
		{"SASL with credentials", envelope(4, bindOp(3, "", sasl("GSS-SPNEGO", "\x60\x82token"))),
			Request{MessageID: 4, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "GSS-SPNEGO"}},
		{"sicily negotiate", envelope(5, bindOp(3, "", ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, "NTLMSSP", "neg"))),
			Request{MessageID: 5, Op: OpBind, Version: 3, Auth: AuthSASL, Mechanism: "sicilyNegotiate"}},
		{"bind with controls", envelope(9, bindOp(3, "u@x.org", simple("pw")), controls()),
			Request{MessageID: 9, Op: OpBind, Version: 3, Name: "u@x.org", Auth: AuthSimple}},
		{"StartTLS", envelope(1, extendedOp(startTLSOID)),
			Request{MessageID: 1, Op: OpStartTLS, Tag: 23}},
		{"other extended operation", envelope(1, extendedOp("1.3.6.1.4.1.4203.1.11.3")),
			Request{MessageID: 1, Op: OpOther, Tag: 23}},
		{"search", envelope(2, searchOp("dc=example,dc=com")),
			Request{MessageID: 2, Op: OpOther, Tag: 3}},
		{"unbind", envelope(5, ber.Encode(ber.ClassApplication, ber.TypePrimitive, 2, nil, "UnbindRequest")),
			Request{MessageID: 5, Op: OpOther, Tag: 2}},
		{"max message ID", bindMsg(2147483647, "a@b", "c"),
			Request{MessageID: 2147483647, Op: OpBind, Version: 3, Name: "a@b", Auth: AuthSimple}},
		{"long-form lengths", longForm(t, bindMsg(300, "user@long.example", "pw")),
			Request{MessageID: 300, Op: OpBind, Version: 3, Name: "user@long.example", Auth: AuthSimple}},
		{"long-form StartTLS", longForm(t, envelope(1, extendedOp(startTLSOID))),
			Request{MessageID: 1, Op: OpStartTLS, Tag: 23}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.msg)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseRequest = %+v, want %+v", got, tt.want)
			}
			// The same bytes framed by ReadMessage come back whole.
			framed, err := ReadMessage(bytes.NewReader(append(tt.msg, 0x30)), 0)
			if err != nil || !bytes.Equal(framed, tt.msg) {
				t.Errorf("ReadMessage = %x, %v; want the message", framed, err)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	good := bindMsg(1, "cn=x,dc=y", "pw")
	tests := []struct {
		name  string
		msg   []byte
		is    error
		place string
	}{
		{"empty", nil, ErrTruncated, "LDAPMessage"},
		{"truncated", good[:len(good)-3], ErrTruncated, "LDAPMessage"},
		{"trailing bytes", append(append([]byte{}, good...), 0), ErrMalformed, "LDAPMessage"},
		{"not a sequence", []byte{0x31, 0x00}, ErrMalformed, "LDAPMessage"},
		{"indefinite length", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00}, ErrIndefiniteLength, "LDAPMessage"},
		{"indefinite inside", []byte{0x30, 0x07, 0x02, 0x01, 0x01, 0x60, 0x80, 0x00, 0x00}, ErrIndefiniteLength, "protocolOp"},
		{"huge length", []byte{0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrTooLarge, "LDAPMessage"},
		{"0xff length", []byte{0x30, 0xff}, ErrMalformed, "LDAPMessage"},
		{"high tag number", []byte{0x30, 0x04, 0x02, 0x01, 0x01, 0x7f}, ErrTruncated, "protocolOp"},
		{"high tag number complete", []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x7f, 0x81, 0x00}, ErrMalformed, "protocolOp"},
		{"no message ID", []byte{0x30, 0x02, 0x60, 0x00}, ErrMalformed, "messageID"},
		{"empty message ID", []byte{0x30, 0x04, 0x02, 0x00, 0x60, 0x00}, ErrMalformed, "messageID"},
		{"negative message ID", bindMsg(-1, "a", "b"), ErrMalformed, "messageID"},
		{"message ID over maxInt", bindMsg(1<<31, "a", "b"), ErrMalformed, "messageID"},
		{"nine-octet message ID", []byte{0x30, 0x0d, 0x02, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x42, 0x00}, ErrMalformed, "messageID"},
		{"no protocolOp", []byte{0x30, 0x03, 0x02, 0x01, 0x01}, ErrTruncated, "protocolOp"},
		{"universal protocolOp", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x04, 0x00}, ErrMalformed, "protocolOp"},
		{"bind without authentication", envelope(1, bindOp(3, "a", nil)), ErrTruncated, "BindRequest authentication"},
		{"bind version 0", envelope(1, bindOp(0, "a", simple("b"))), ErrMalformed, "BindRequest version"},
		{"bind version 128", envelope(1, bindOp(128, "a", simple("b"))), ErrMalformed, "BindRequest version"},
		{"bind unknown auth choice", envelope(1, bindOp(3, "a", ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, "x", "krb"))), ErrMalformed, "BindRequest authentication"},
		{"bind constructed password", envelope(1, bindOp(3, "a", ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "pw"))), ErrMalformed, "BindRequest authentication"},
		{"SASL without mechanism", envelope(1, bindOp(3, "", ber.Encode(ber.ClassContext, ber.TypeConstructed, 3, nil, "sasl"))), ErrTruncated, "SaslCredentials mechanism"},
		{"bind name not a string", []byte{0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x02, 0x00, 0x80, 0x00}, ErrMalformed, "BindRequest name"},
		{"StartTLS without name", envelope(1, ber.Encode(ber.ClassApplication, ber.TypeConstructed, 23, nil, "ext")), ErrTruncated, "ExtendedRequest requestName"},
		{"inner length beyond outer", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x60, 0x7f}, ErrTruncated, "protocolOp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseRequest(tt.msg)
			if !errors.Is(err, tt.is) {
				t.Fatalf("ParseRequest error = %v, want %v", err, tt.is)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.Place != tt.place {
				t.Errorf("error %v: place want %q", err, tt.place)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want Response
	}{
		{"bind success", encodeResult(1, appBindResponse, 0, "", ""), Response{MessageID: 1, Tag: 1, IsBind: true}},
		{"bind invalid credentials", encodeResult(2, appBindResponse, 49, "80090308: LdapErr: DSID-0C090447, data 52e", ""),
			Response{MessageID: 2, Tag: 1, IsBind: true, ResultCode: 49, Diagnostic: "80090308: LdapErr: DSID-0C090447, data 52e"}},
		{"long-form bind response", longForm(t, encodeResult(70000, appBindResponse, 53, "unwilling", "")),
			Response{MessageID: 70000, Tag: 1, IsBind: true, ResultCode: 53, Diagnostic: "unwilling"}},
		{"StartTLS response", encodeResult(1, appExtendedResponse, 0, "", startTLSOID), Response{MessageID: 1, Tag: 24}},
		{"notice of disconnection", encodeNotice(52, "shutting down"), Response{Tag: 24, ResultCode: 52, Diagnostic: "shutting down"}},
		{"search done", encodeResult(3, appSearchDone, 32, "no such object", ""), Response{MessageID: 3, Tag: 5, ResultCode: 32, Diagnostic: "no such object"}},
		{"search entry has no result", envelope(3, entryOp("dc=x")), Response{MessageID: 3, Tag: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(tt.msg)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseResponse = %+v, want %+v", got, tt.want)
			}
		})
	}

	bad := []struct {
		name  string
		msg   []byte
		place string
	}{
		{"no result code", envelope(1, ber.Encode(ber.ClassApplication, ber.TypeConstructed, 1, nil, "br")), "LDAPResult resultCode"},
		{"integer result code", envelope(1, withChildren(1, ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, 0, "rc"))), "LDAPResult resultCode"},
		{"no diagnostic", envelope(1, withChildren(1,
			ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, 0, "rc"),
			ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", "dn"))), "LDAPResult diagnosticMessage"},
		{"negative result code", envelope(1, withChildren(1, ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, -3, "rc"))), "LDAPResult resultCode"},
		{"primitive bind response", envelope(1, ber.Encode(ber.ClassApplication, ber.TypePrimitive, 1, nil, "br")), "LDAPResult"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseResponse(tt.msg)
			var de *DecodeError
			if !errors.As(err, &de) || de.Place != tt.place {
				t.Errorf("ParseResponse error = %v, want place %q", err, tt.place)
			}
		})
	}
}

func withChildren(app ber.Tag, children ...*ber.Packet) *ber.Packet {
	op := ber.Encode(ber.ClassApplication, ber.TypeConstructed, app, nil, "op")
	for _, c := range children {
		op.AppendChild(c)
	}
	return op
}

func entryOp(dn string) *ber.Packet {
	return withChildren(4, ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "dn"), ber.NewSequence("attrs"))
}

func TestReadMessage(t *testing.T) {
	msg := bindMsg(1, "u@example.com", "pw")
	long := longForm(t, msg)

	t.Run("consumes exactly one message", func(t *testing.T) {
		stream := append(append(append([]byte{}, msg...), long...), msg...)
		r := bytes.NewReader(stream)
		for i, want := range [][]byte{msg, long, msg} {
			got, err := ReadMessage(r, 1024)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("message %d = %x, %v; want %x", i, got, err, want)
			}
		}
		if _, err := ReadMessage(r, 1024); err != io.EOF {
			t.Fatalf("at end: %v, want io.EOF", err)
		}
	})
	t.Run("plain reader is not over-read", func(t *testing.T) {
		stream := append(append([]byte{}, msg...), 0xAA)
		r := iotest.OneByteReader(bytes.NewReader(stream))
		if _, err := ReadMessage(r, 0); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(r)
		if !bytes.Equal(rest, []byte{0xAA}) {
			t.Fatalf("left %x, want aa", rest)
		}
	})
	t.Run("cap counts the header", func(t *testing.T) {
		if _, err := ReadMessage(bytes.NewReader(msg), len(msg)); err != nil {
			t.Fatalf("message of exactly max: %v", err)
		}
		if _, err := ReadMessage(bytes.NewReader(msg), len(msg)-1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("one over max: %v, want ErrTooLarge", err)
		}
	})

	tests := []struct {
		name string
		in   []byte
		is   error
	}{
		{"empty", nil, io.EOF},
		{"truncated header", []byte{0x30}, io.ErrUnexpectedEOF},
		{"truncated long length", []byte{0x30, 0x84, 0x00, 0x00}, io.ErrUnexpectedEOF},
		{"truncated content", msg[:len(msg)-1], io.ErrUnexpectedEOF},
		{"not a sequence", []byte("GET / HTTP/1.1\r\n"), ErrMalformed},
		{"TLS ClientHello", []byte{0x16, 0x03, 0x01, 0x00, 0x05}, ErrMalformed},
		{"indefinite", []byte{0x30, 0x80, 0x02, 0x01, 0x01, 0x00, 0x00}, ErrIndefiniteLength},
		{"0xff length", []byte{0x30, 0xff}, ErrMalformed},
		{"claims 2 GiB", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"claims 2^64-1", []byte{0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"127 length octets", append([]byte{0x30, 0xfe}, bytes.Repeat([]byte{0xff}, 126)...), ErrTooLarge},
		{"claims just over the cap", []byte{0x30, 0x82, 0x04, 0x00}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadMessage(bytes.NewReader(tt.in), 1024)
			if !errors.Is(err, tt.is) {
				t.Fatalf("ReadMessage error = %v, want %v", err, tt.is)
			}
		})
	}
}

// An oversize claim is refused before anything is allocated for it.
func TestReadMessageOversizeAllocatesNothing(t *testing.T) {
	in := []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01}
	r := bytes.NewReader(in)
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(in)
		if _, err := ReadMessage(r, DefaultMaxMessage); !errors.Is(err, ErrTooLarge) {
			t.Fatal(err)
		}
	})
	// The *DecodeError itself is the only allocation.
	if allocs > 1 {
		t.Fatalf("ReadMessage allocated %v times for an oversize claim", allocs)
	}
}

func TestParseRequestAllocs(t *testing.T) {
	msg := longForm(t, bindMsg(1, "", ""))
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(msg); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("ParseRequest of an anonymous bind allocated %v times", allocs)
	}
}

func BenchmarkParseRequest(b *testing.B) {
	msg := bindMsg(1, "cn=admin,ou=people,dc=example,dc=com", "secret")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRequest(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestDecodeErrorText(t *testing.T) {
	_, err := ParseRequest(envelope(1, bindOp(3, "a", ber.NewString(ber.ClassContext, ber.TypePrimitive, 1, "x", "krb"))))
	if err == nil || !strings.Contains(err.Error(), "BindRequest authentication") || !strings.Contains(err.Error(), "0x81") {
		t.Fatalf("error text %q should name the element and the tag", err)
	}
}
