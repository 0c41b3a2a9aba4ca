package sniff

import (
	"bytes"
	"errors"
	"regexp"
	"testing"
	"unsafe"
)

// Reference matchers for a decided prefix, written independently of
// Classify (regular expressions over the rules in its doc comment).
var (
	refTLS  = regexp.MustCompile(`^\x16\x03[\x00-\x04]`)
	refH2   = regexp.MustCompile(`^PRI \* HTTP/2\.0\r\n\r\nSM\r\n\r\n`)
	refHTTP = regexp.MustCompile(`^(?:\r\n)*(?:(?:GET|HEAD|POST|PUT|DELETE|CONNECT|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE|LOCK|UNLOCK|REPORT|MKCALENDAR|SEARCH) |(?:OPTIONS|UPDATE) [^\x00-\x20\x7f]+ HTTP/1\.[01])`)
	refSIP  = regexp.MustCompile(`^(?:\r\n)*(?:(?:INVITE|ACK|BYE|CANCEL|REGISTER|PRACK|SUBSCRIBE|NOTIFY|PUBLISH|INFO|REFER|MESSAGE|SIP/2\.0) |(?:OPTIONS|UPDATE) [^\x00-\x20\x7f]+ SIP/2\.0)`)
)

// refLDAP: SEQUENCE, definite length >= 5 in at most 4 length bytes, then
// the INTEGER tag.
func refLDAP(b []byte) bool {
	if len(b) < 3 || b[0] != 0x30 {
		return false
	}
	lenBytes, length := 0, uint64(b[1])
	if b[1]&0x80 != 0 {
		lenBytes = int(b[1] & 0x7f)
		if lenBytes == 0 || lenBytes > 4 || len(b) < 3+lenBytes {
			return false
		}
		var v [8]byte
		copy(v[8-lenBytes:], b[2:2+lenBytes])
		length = uint64(v[4])<<24 | uint64(v[5])<<16 | uint64(v[6])<<8 | uint64(v[7])
	}
	return length >= 5 && b[2+lenBytes] == 0x02
}

// refSTUN: first byte 0x00 or 0x01, the magic cookie at bytes 4..7.
func refSTUN(b []byte) bool {
	return len(b) >= 8 && b[0] <= 1 && string(b[4:8]) == "\x21\x12\xa4\x42"
}

func reference(b []byte) Proto {
	switch {
	case refSTUN(b):
		return STUN
	case refTLS.Match(b):
		return TLS
	case refLDAP(b):
		return LDAP
	case refH2.Match(b):
		return HTTP2
	case refHTTP.Match(b):
		return HTTP
	case refSIP.Match(b):
		return SIP
	}
	return Unknown
}

func FuzzClassify(f *testing.F) {
	for _, s := range samples {
		f.Add([]byte(s.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 512 { // the prefix walk below is quadratic
			b = b[:512]
		}
		// Decisions are final: once a prefix decides, every longer prefix
		// gives the same answer. (This holds for every input: Classify
		// scans left to right and decides on the bytes seen so far.)
		decidedAt, decided := -1, Unknown
		for i := 0; i <= len(b); i++ {
			p, more := Classify(b[:i])
			if more && p != Unknown {
				t.Fatalf("Classify(%q) = %v with needMore", b[:i], p)
			}
			if decidedAt >= 0 {
				if more || p != decided {
					t.Fatalf("Classify(%q) = %v, %v; but %d bytes decided %v", b[:i], p, more, decidedAt, decided)
				}
				continue
			}
			if !more {
				decidedAt, decided = i, p
			}
		}
		// Differential: known protocols are decided exactly when the
		// reference matches.
		p, more := Classify(b)
		want := reference(b)
		if want != Unknown && (more || p != want) {
			t.Fatalf("Classify(%q) = %v, %v; reference says %v", b, p, more, want)
		}
		if p != Unknown && p != want {
			t.Fatalf("Classify(%q) = %v; reference says %v", b, p, want)
		}
	})
}

func FuzzServerName(f *testing.F) {
	f.Add([]byte{})
	f.Add(singleRecord(handshakeMsg(helloBody(sniExt(hostEntry("seed.example"))))))
	f.Add(records(handshakeMsg(helloBody(append(sniExt(hostEntry("frag.example")), otherExts...))), 7))
	f.Fuzz(func(t *testing.T, b []byte) {
		full := serverName(b)
		name, ok, more, err := ServerName(b)
		switch {
		case err != nil:
			var de *DecodeError
			if !errors.As(err, &de) || ok || more || name != nil {
				t.Fatalf("error result %q, %v, %v, %v", name, ok, more, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNameSplit) {
				t.Fatalf("DecodeError wraps %v", de.Err)
			}
			if de.Offset < 0 || de.Offset > len(b) {
				t.Fatalf("offset %d outside %d bytes", de.Offset, len(b))
			}
		case ok:
			if more || len(name) == 0 || !within(name, b) {
				t.Fatalf("ok with needMore %v, name %q not a non-empty part of b", more, name)
			}
		case name != nil:
			t.Fatalf("name %q without ok", name)
		}

		// Answers are final: every prefix needs more or agrees with b.
		step := 1
		if len(b) > 512 {
			step = len(b)/512 + 1
		}
		for i := 0; i < len(b); i += step {
			got := serverName(b[:i])
			if got.more && got.err == nil && !got.ok {
				continue
			}
			if !sameResult(got, full) {
				t.Fatalf("ServerName(b[:%d]) = %+v but ServerName(b) = %+v", i, got, full)
			}
		}

		// Differential: when crypto/tls accepts the ClientHello, it saw the
		// same name.
		goName, parsed := cryptoTLSServerName(b)
		if !parsed {
			return
		}
		switch {
		case more:
			t.Fatalf("needMore for a hello crypto/tls parsed (name %q)", goName)
		case err != nil:
			var de *DecodeError
			errors.As(err, &de)
			if !stricterThanGo[de.Place] && !(errors.Is(err, ErrNameSplit) && goName != "") {
				t.Fatalf("ServerName: %v; crypto/tls parsed it (name %q)", err, goName)
			}
		case string(name) != goName:
			t.Fatalf("ServerName = %q, crypto/tls = %q", name, goName)
		}
	})
}

// stricterThanGo lists checks crypto/tls does not make while reading a
// ClientHello: it accepts any record version below 0x1000, and empty
// cipher_suites and compression_methods vectors parse (they fail later).
var stricterThanGo = map[string]bool{
	"record version":      true,
	"cipher_suites":       true,
	"compression_methods": true,
}

// within reports whether s is a subslice of b.
func within(s, b []byte) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= start && p+uintptr(len(s)) <= start+uintptr(len(b))
}

func TestWithin(t *testing.T) {
	b := []byte("0123456789")
	if !within(b[2:5], b) || !within(b, b) || within(bytes.Clone(b[2:5]), b) || within(b[:0], b) {
		t.Fatal("within is wrong")
	}
}
