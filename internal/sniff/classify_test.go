package sniff

import (
	"errors"
	"strings"
	"testing"
)

// samples are complete, valid first flights with the shortest prefix that
// decides them.
var samples = []struct {
	name   string
	in     string
	want   Proto
	decide int // length of the shortest deciding prefix
}{
	{"tls 1.0 record", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", TLS, 3},
	{"tls 1.2 record", "\x16\x03\x03\x00\x10", TLS, 3},
	{"tls ssl3 record", "\x16\x03\x00\x00\x10", TLS, 3},
	{"http get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", HTTP, 4},
	{"http post", "POST /login.php HTTP/1.1\r\nHost: a\r\n\r\n", HTTP, 5},
	{"http put", "PUT /x HTTP/1.1\r\n\r\n", HTTP, 4},
	{"http head", "HEAD / HTTP/1.0\r\n\r\n", HTTP, 5},
	{"http delete", "DELETE /x HTTP/1.1\r\n\r\n", HTTP, 7},
	{"http patch", "PATCH /x HTTP/1.1\r\n\r\n", HTTP, 6},
	{"http connect", "CONNECT a:443 HTTP/1.1\r\n\r\n", HTTP, 8},
	{"http trace", "TRACE / HTTP/1.1\r\n\r\n", HTTP, 6},
	{"webdav propfind", "PROPFIND /dav/ HTTP/1.1\r\nDepth: 1\r\n\r\n", HTTP, 9},
	{"caldav mkcalendar", "MKCALENDAR /cal/ HTTP/1.1\r\n\r\n", HTTP, 11},
	{"carddav report", "REPORT /ab/ HTTP/1.1\r\n\r\n", HTTP, 7},
	{"http options", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", HTTP, 18},
	{"http options 1.0", "OPTIONS /x HTTP/1.0\r\n\r\n", HTTP, 19},
	{"http update", "UPDATE /v HTTP/1.1\r\n\r\n", HTTP, 18},
	{"http after crlf", "\r\nGET / HTTP/1.1\r\n\r\n", HTTP, 6},
	{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00", HTTP2, 24},
	{"sip invite", "INVITE sip:bob@example.com SIP/2.0\r\nVia: x\r\n\r\n", SIP, 7},
	{"sip register", "REGISTER sip:example.com SIP/2.0\r\n\r\n", SIP, 9},
	{"sip ack", "ACK sip:b@h SIP/2.0\r\n\r\n", SIP, 4},
	{"sip bye", "BYE sip:b@h SIP/2.0\r\n\r\n", SIP, 4},
	{"sip cancel", "CANCEL sip:b@h SIP/2.0\r\n\r\n", SIP, 7},
	{"sip prack", "PRACK sip:b@h SIP/2.0\r\n\r\n", SIP, 6},
	{"sip subscribe", "SUBSCRIBE sip:b@h SIP/2.0\r\n\r\n", SIP, 10},
	{"sip notify", "NOTIFY sip:b@h SIP/2.0\r\n\r\n", SIP, 7},
	{"sip publish", "PUBLISH sip:b@h SIP/2.0\r\n\r\n", SIP, 8},
	{"sip info", "INFO sip:b@h SIP/2.0\r\n\r\n", SIP, 5},
	{"sip refer", "REFER sip:b@h SIP/2.0\r\n\r\n", SIP, 6},
	{"sip message", "MESSAGE sip:b@h SIP/2.0\r\n\r\n", SIP, 8},
	{"sip options", "OPTIONS sip:100@pbx.example.com SIP/2.0\r\n\r\n", SIP, 39},
	{"sip update", "UPDATE sip:b@h;transport=tcp SIP/2.0\r\n\r\n", SIP, 36},
	{"sip response", "SIP/2.0 200 OK\r\nVia: x\r\n\r\n", SIP, 8},
	{"sip keepalive then register", "\r\n\r\nREGISTER sip:h SIP/2.0\r\n\r\n", SIP, 13},
	{"ldap bind short length", "\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00", LDAP, 3},
	{"ldap unbind minimal", "\x30\x05\x02\x01\x02\x42\x00", LDAP, 3},
	{"ldap long length 0x81", "\x30\x81\x80\x02\x01\x01", LDAP, 4},
	{"ldap long length 0x84", "\x30\x84\x00\x00\x00\x10\x02\x01\x01", LDAP, 7},
}

func TestClassifySamples(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			b := []byte(s.in)
			// Every prefix needs more or gives the right answer, and the
			// answer comes exactly at the expected length.
			for i := 0; i <= len(b); i++ {
				p, more := Classify(b[:i])
				switch {
				case i < s.decide && (!more || p != Unknown):
					t.Fatalf("Classify(%q) = %v, %v; want Unknown, needMore", b[:i], p, more)
				case i >= s.decide && (more || p != s.want):
					t.Fatalf("Classify(%q) = %v, %v; want %v decided", b[:i], p, more, s.want)
				}
			}
		})
	}
}

func TestClassifyTable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Proto
		more bool
	}{
		{"empty", "", Unknown, true},
		{"tls wrong major", "\x16\x02", Unknown, false},
		{"tls minor too high", "\x16\x03\x05", Unknown, false},
		{"tls alert record", "\x15\x03\x03", Unknown, false},
		{"sslv2 hello", "\x80\x2e\x01\x03\x01", Unknown, false},
		{"ldap indefinite length", "\x30\x80\x02\x01", Unknown, false},
		{"ldap 5 length bytes", "\x30\x85\x00", Unknown, false},
		{"ldap length too short", "\x30\x04\x02\x01\x01\x42", Unknown, false},
		{"ldap long length too short", "\x30\x81\x03\x02", Unknown, false},
		{"ldap long length incomplete", "\x30\x82\x01", Unknown, true},
		{"ldap not integer", "\x30\x0c\x04\x01", Unknown, false},
		{"lower-case method", "get / HTTP/1.1\r\n", Unknown, false},
		{"mixed-case method", "Get / HTTP/1.1\r\n", Unknown, false},
		{"unknown method complete", "BREW /pot HTTP/1.1\r\n", Unknown, false},
		{"unknown method prefix", "BR", Unknown, false},
		{"method prefix", "INV", Unknown, true},
		{"method without space", "GETX / HTTP/1.1", Unknown, false},
		{"tab after method", "GET\t/ HTTP/1.1", Unknown, false},
		{"word too long", "MKCALENDARS", Unknown, false},
		{"leading space", " GET /", Unknown, false},
		{"only crlf", "\r\n\r\n", Unknown, true},
		{"lone cr", "\r\n\r", Unknown, true},
		{"cr without lf", "\r\rGET", Unknown, false},
		{"bare lf", "\nGET / HTTP/1.1", Unknown, false},
		{"tls after crlf", "\r\n\x16\x03\x01", Unknown, false},
		{"ldap after crlf", "\r\n\x30\x0c\x02", Unknown, false},
		{"h2 preface after crlf", "\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Unknown, false},
		{"h2 preface wrong", "PRI * HTTP/2.0\r\n\r\nXM", Unknown, false},
		{"h2 preface partial", "PRI * HTTP/2.0\r\n", Unknown, true},
		{"pri prefix", "PR", Unknown, true},
		{"options target partial", "OPTIONS sip:a@b", Unknown, true},
		{"options version partial", "OPTIONS * HTTP/1.", Unknown, true},
		{"options http 2.0", "OPTIONS * HTTP/2.0\r\n", Unknown, false},
		{"options http 0.9 style", "OPTIONS /\r\n", Unknown, false},
		{"options empty target", "OPTIONS  HTTP/1.1", Unknown, false},
		{"options control in target", "OPTIONS /a\x00b HTTP/1.1", Unknown, false},
		{"options lower-case sip version", "OPTIONS sip:a sip/2.0", Unknown, false},
		{"options utf-8 target", "OPTIONS /caf\xc3\xa9 HTTP/1.1\r\n", HTTP, false},
		{"sip response without space", "SIP/2.0\r\n", Unknown, false},
		{"http response is not a request", "HTTP/1.1 200 OK\r\n", Unknown, false},
		{"ssh banner", "SSH-2.0-OpenSSH_9.2\r\n", Unknown, false},
		{"binary zero", "\x00", Unknown, true},
		{"binary zeros", "\x00\x00\x00\x00\x00", Unknown, false},
		{"stun binding", "\x00\x01\x00\x00\x21\x12\xa4\x42", STUN, false},
		{"stun allocate, partial cookie", "\x00\x03\x00\x10\x21\x12", Unknown, true},
		{"classic STUN (RFC 3489, no cookie)", "\x00\x01\x00\x00\xde\xad\xbe\xef", Unknown, false},
		{"ChannelData is no first message", "\x40\x00\x00\x04\x21\x12\xa4\x42", Unknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, more := Classify([]byte(tt.in))
			if p != tt.want || more != tt.more {
				t.Fatalf("Classify(%q) = %v, %v; want %v, %v", tt.in, p, more, tt.want, tt.more)
			}
		})
	}
}

// A first byte that starts no known protocol is Unknown at once.
func TestClassifyFirstByte(t *testing.T) {
	const starts = "\x00\x01\x16\x30\rABCDGHILMNOPRSTU"
	for c := 0; c < 256; c++ {
		p, more := Classify([]byte{byte(c)})
		if p != Unknown {
			t.Fatalf("Classify(%#x) = %v, decided on one byte", c, p)
		}
		if want := strings.IndexByte(starts, byte(c)) >= 0; more != want {
			t.Errorf("Classify(%#x) needMore = %v, want %v", c, more, want)
		}
	}
}

func TestClassifyAllocs(t *testing.T) {
	for _, s := range samples {
		b := []byte(s.in)
		if n := testing.AllocsPerRun(100, func() { Classify(b) }); n != 0 {
			t.Errorf("%s: Classify allocates %v times", s.name, n)
		}
		if n := testing.AllocsPerRun(100, func() { Classify(b[:s.decide-1]) }); n != 0 {
			t.Errorf("%s: Classify of undecided prefix allocates %v times", s.name, n)
		}
	}
	garbage := []byte("BREW /pot HTTP/1.1\r\n")
	if n := testing.AllocsPerRun(100, func() { Classify(garbage) }); n != 0 {
		t.Errorf("Classify of garbage allocates %v times", n)
	}
}

func TestProtoString(t *testing.T) {
	for p := Unknown; p <= LDAP; p++ {
		got, err := ParseProto(p.String())
		if err != nil || got != p {
			t.Errorf("ParseProto(%q) = %v, %v; want %v", p.String(), got, err, p)
		}
	}
	want := map[Proto]string{Unknown: "unknown", TLS: "tls", HTTP: "http", HTTP2: "http2", SIP: "sip", LDAP: "ldap", 9: "proto(9)"}
	for p, s := range want {
		if p.String() != s {
			t.Errorf("Proto(%d).String() = %q, want %q", p, p.String(), s)
		}
	}
	if p, err := ParseProto("SIP"); err != nil || p != SIP {
		t.Errorf("ParseProto(SIP) = %v, %v", p, err)
	}
	for _, s := range []string{"", "https", "h2", "proto(9)"} {
		if _, err := ParseProto(s); !errors.Is(err, ErrUnknownProto) {
			t.Errorf("ParseProto(%q) error = %v, want ErrUnknownProto", s, err)
		}
	}
}
