package ldap

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// The seed corpora live in testdata/fuzz/FuzzX; f.Add adds a few more that
// are easier to read here.

func FuzzReadMessage(f *testing.F) {
	f.Add(bindMsg(1, "cn=admin,dc=example,dc=com", "secret"))
	f.Add([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	const max = 4096
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		msg, err := ReadMessage(r, max)
		if err != nil {
			if msg != nil {
				t.Fatal("message returned with an error")
			}
			if err != io.EOF && !errors.As(err, new(*DecodeError)) {
				t.Fatalf("error %v is neither io.EOF nor a *DecodeError", err)
			}
			return
		}
		if len(msg) > max {
			t.Fatalf("message of %d octets over the cap %d", len(msg), max)
		}
		if !bytes.HasPrefix(data, msg) || r.Len() != len(data)-len(msg) {
			t.Fatalf("read %d octets but returned %d", len(data)-r.Len(), len(msg))
		}
		// Round trip: the message alone frames to itself.
		again, err := ReadMessage(bytes.NewReader(msg), max)
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("re-reading the message: %v", err)
		}
		// Differential: where asn1-ber reads a packet from the same bytes, it
		// consumes exactly the message we framed.
		r2 := bytes.NewReader(data)
		if _, err := ber.ReadPacket(r2); err == nil {
			if used := len(data) - r2.Len(); used != len(msg) {
				t.Fatalf("asn1-ber read %d octets, we framed %d", used, len(msg))
			}
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add(bindMsg(1, "cn=admin,dc=example,dc=com", "secret"))
	f.Add(envelope(1, bindOp(3, "", sasl("GSSAPI", "tok"))))
	f.Add(envelope(1, extendedOp(startTLSOID)))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := ParseRequest(data)
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		// The proxy's variant agrees, with the name left in the message.
		raw, name, rawErr := parseRequest(data)
		raw.Name = string(name)
		if rawErr != nil || raw != req {
			t.Fatalf("parseRequest = %+v, %v; ParseRequest = %+v", raw, rawErr, req)
		}
		if len(name) > 0 && !within(data, name) {
			t.Fatal("parseRequest copied the bind name")
		}
		if req.MessageID < 0 || req.MessageID > 1<<31-1 {
			t.Fatalf("message ID %d out of range", req.MessageID)
		}
		if req.Op != OpBind && (req.Name != "" || req.Mechanism != "" || req.Anonymous || req.Version != 0) {
			t.Fatalf("bind fields set for %v: %+v", req.Op, req)
		}
		if req.Anonymous && (req.Name != "" || req.Auth != AuthSimple) {
			t.Fatalf("anonymous bind with a name or SASL: %+v", req)
		}
		// Round trip: a bind built from the decoded values decodes the same.
		if req.Op == OpBind && req.Auth == AuthSimple {
			pw := "x"
			if req.Anonymous {
				pw = ""
			}
			back, err := ParseRequest(envelope(req.MessageID, bindOp(int64(req.Version), req.Name, simple(pw))))
			if err != nil {
				t.Fatalf("re-encoded bind: %v", err)
			}
			if back != req {
				t.Fatalf("round trip: %+v, want %+v", back, req)
			}
		}
		// Differential: where asn1-ber decodes the bytes, it sees the same
		// message ID, operation and bind name.
		p, err := ber.DecodePacketErr(data)
		if err != nil || len(p.Children) < 2 {
			return
		}
		if id, ok := p.Children[0].Value.(int64); !ok || id != req.MessageID {
			t.Fatalf("asn1-ber message ID %v, ours %d", p.Children[0].Value, req.MessageID)
		}
		op := p.Children[1]
		if uint8(op.Tag) != req.Tag {
			t.Fatalf("asn1-ber op tag %d, ours %d", op.Tag, req.Tag)
		}
		if req.Op == OpBind && len(op.Children) >= 2 {
			if name, _ := op.Children[1].Value.(string); name != req.Name {
				t.Fatalf("asn1-ber bind name %q, ours %q", name, req.Name)
			}
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(encodeResult(1, appBindResponse, 49, "invalid credentials", ""))
	f.Add(encodeNotice(2, "bye"))
	f.Fuzz(func(t *testing.T, data []byte) {
		resp, err := ParseResponse(data)
		if err != nil {
			if !errors.As(err, new(*DecodeError)) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		if resp.IsBind != (resp.Tag == appBindResponse) {
			t.Fatalf("IsBind %v for tag %d", resp.IsBind, resp.Tag)
		}
		if resp.ResultCode < 0 {
			t.Fatalf("negative result code %d", resp.ResultCode)
		}
		if hasResult(resp.Tag) {
			back, err := ParseResponse(encodeResult(resp.MessageID, int(resp.Tag), resp.ResultCode, resp.Diagnostic, ""))
			if err != nil || back != resp {
				t.Fatalf("round trip: %+v, %v; want %+v", back, err, resp)
			}
		}
	})
}

func FuzzDomain(f *testing.F) {
	for _, s := range []string{`EXAMPLE\bob`, "alice@example.com", "CN=x,OU=y,DC=example,DC=com", `cn=a\,b,dc=x`, `cn="q",dc=y`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		d := Domain(name)
		u := User(name)
		if d != lowerASCII(d) {
			t.Fatalf("Domain(%q) = %q is not lower case", name, d)
		}
		if strings.HasSuffix(d, ".") {
			t.Fatalf("Domain(%q) = %q ends in a dot", name, d)
		}
		if len(d) > len(name) || len(u) > len(name) {
			t.Fatalf("Domain/User longer than the name: %q, %q from %q", d, u, name)
		}
		// Upper-casing ASCII letters does not change the domain.
		if up := upperASCII(name); Domain(up) != d {
			t.Fatalf("Domain(%q) = %q but Domain(%q) = %q", name, d, up, Domain(up))
		}
		// A principal name built from a clean domain gives it back.
		if d != "" && !strings.ContainsAny(d, `@\=`) && strings.TrimSpace(d) == d {
			if got := Domain("user@" + d); got != d {
				t.Fatalf("Domain(user@%s) = %q", d, got)
			}
		}
	})
}

// FuzzAppendDomain checks the allocation-free AppendDomain, Domain, User
// and eventUser against the first implementation, kept in name_ref_test.go.
func FuzzAppendDomain(f *testing.F) {
	for _, tt := range nameCases {
		f.Add(tt.name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := refDomain(name)
		if got := Domain(name); got != want {
			t.Fatalf("Domain(%q) = %q, reference %q", name, got, want)
		}
		if got := AppendDomain([]byte("p."), []byte(name)); string(got) != "p."+want {
			t.Fatalf("AppendDomain(p., %q) = %q, reference %q", name, got, want)
		}
		var buf [maxDomainLen]byte
		if got := AppendDomain(buf[:0], []byte(name)); string(got) != want {
			t.Fatalf("AppendDomain(%q) = %q, reference %q", name, got, want)
		}
		wantUser := refUser(name)
		if got := User(name); got != wantUser {
			t.Fatalf("User(%q) = %q, reference %q", name, got, wantUser)
		}
		if got := eventUser([]byte(name)); got != clipUser(wantUser) {
			t.Fatalf("eventUser(%q) = %q, reference %q", name, got, clipUser(wantUser))
		}
	})
}

// within reports whether sub is a slice of b's memory.
func within(b, sub []byte) bool {
	for i := range b {
		if &b[i] == &sub[0] {
			return true
		}
	}
	return false
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
