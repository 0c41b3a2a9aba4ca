package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// view is a Message with strings, for readable comparisons.
type view struct {
	Request                     bool
	Method, RequestURI          string
	TargetUser, TargetHost      string
	Status                      int
	FromUser, FromHost, FromTag string
	ToUser, ToHost, ToTag       string
	CallID                      string
	CSeq                        uint32
	CSeqMethod, Via, UserAgent  string
	AuthUser                    string
	ContentLength, HeaderLen    int
	RoutingDomain               string
}

func viewOf(m *Message) view {
	return view{
		Request: m.Request, Method: string(m.Method), RequestURI: string(m.RequestURI),
		TargetUser: string(m.Target.User), TargetHost: string(m.Target.Host), Status: m.Status,
		FromUser: string(m.From.User), FromHost: string(m.From.Host), FromTag: string(m.From.Tag),
		ToUser: string(m.To.User), ToHost: string(m.To.Host), ToTag: string(m.To.Tag),
		CallID: string(m.CallID), CSeq: m.CSeq, CSeqMethod: string(m.CSeqMethod), Via: string(m.Via),
		UserAgent: string(m.UserAgent), AuthUser: string(m.AuthUser),
		ContentLength: m.ContentLength, HeaderLen: m.HeaderLen, RoutingDomain: string(m.RoutingDomain()),
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// headLen is the offset after the first empty line, computed independently.
func headLen(b []byte) int { return bytes.Index(b, []byte("\r\n\r\n")) + 4 }

// TestParseMessages parses the real-world messages in testdata/messages.
func TestParseMessages(t *testing.T) {
	tests := []struct {
		file string
		want view // HeaderLen is filled in from the file
	}{
		{"register-yealink-digest", view{
			Request: true, Method: "REGISTER", RequestURI: "sip:pbx.example.com:5061;transport=tls", TargetHost: "pbx.example.com",
			FromUser: "1001", FromHost: "pbx.example.com", FromTag: "2046287531", ToUser: "1001", ToHost: "pbx.example.com",
			CallID: "1846359473@192.168.1.23", CSeq: 2, CSeqMethod: "REGISTER",
			Via: "SIP/2.0/TLS 192.168.1.23:5061;branch=z9hG4bK1876553271;rport", UserAgent: "Yealink SIP-T46U 108.86.0.20",
			AuthUser: "1001", ContentLength: 0, RoutingDomain: "pbx.example.com",
		}},
		{"register-grandstream-digest-qop", view{
			Request: true, Method: "REGISTER", RequestURI: "sip:voip.example.org", TargetHost: "voip.example.org",
			FromUser: "200", FromHost: "voip.example.org", FromTag: "1325399093", ToUser: "200", ToHost: "voip.example.org",
			CallID: "1734906542-5062-1@BA.A.A.FA", CSeq: 2001, CSeqMethod: "REGISTER",
			Via: "SIP/2.0/TCP 10.0.0.50:35142;branch=z9hG4bK1442939611;rport;alias", UserAgent: "Grandstream GXP2170 1.0.11.23",
			AuthUser: "200", ContentLength: 0, RoutingDomain: "voip.example.org",
		}},
		{"register-zoiper-digest-nospace", view{ // mixed-case host is returned as written
			Request: true, Method: "REGISTER", RequestURI: "sip:sip.example.net;transport=TCP", TargetHost: "sip.example.net",
			FromUser: "alice", FromHost: "SIP.Example.NET", FromTag: "3f4e5d6c", ToUser: "alice", ToHost: "sip.example.net",
			CallID: "ZmQ4YjM1NzE2OGQ0ZGQ5OTY0YzQ0NjQ1ZjQ5ZTY1ZDk", CSeq: 2, CSeqMethod: "REGISTER",
			Via: "SIP/2.0/TCP 192.168.0.12:51062;branch=z9hG4bK-524287-1---5a6f2c1b1c0e2a3d;rport", UserAgent: "Zoiper v2.10.19.4",
			AuthUser: "alice", ContentLength: 0, RoutingDomain: "SIP.Example.NET",
		}},
		{"invite-sdp-proxy-auth", view{
			Request: true, Method: "INVITE", RequestURI: "sip:004930123456@pbx.example.com;user=phone",
			TargetUser: "004930123456", TargetHost: "pbx.example.com",
			FromUser: "1001", FromHost: "pbx.example.com", FromTag: "1491263485", ToUser: "004930123456", ToHost: "pbx.example.com",
			CallID: "0_2880414185@192.168.1.23", CSeq: 2, CSeqMethod: "INVITE",
			Via: "SIP/2.0/TLS 192.168.1.23:5061;branch=z9hG4bK3964553342;rport", UserAgent: "Yealink SIP-T46U 108.86.0.20",
			AuthUser: "1001", ContentLength: 269, RoutingDomain: "pbx.example.com",
		}},
		{"ok-200-totag-sdp", view{ // responses have no routing domain; Via is the first value only
			Status: 200, FromUser: "1001", FromHost: "pbx.example.com", FromTag: "1491263485",
			ToUser: "004930123456", ToHost: "pbx.example.com", ToTag: "as5c1d2e3f",
			CallID: "0_2880414185@192.168.1.23", CSeq: 2, CSeqMethod: "INVITE",
			Via:           "SIP/2.0/TLS 192.168.1.23:5061;branch=z9hG4bK3964553342;rport=40312;received=198.51.100.7",
			ContentLength: 228,
		}},
		{"compact-ipv6-tel", view{ // IPv6 without brackets and port, password dropped, tel: To has no host
			Request: true, Method: "INVITE", RequestURI: "sip:+4930123456@[2001:db8::10]:5060;user=phone",
			TargetUser: "+4930123456", TargetHost: "2001:db8::10",
			FromUser: "bob", FromHost: "2001:db8::1", FromTag: "9fxced76sl", ToUser: "+4930123456",
			CallID: "3848276298220188511@2001:db8::1", CSeq: 1, CSeqMethod: "INVITE",
			Via: "SIP/2.0/TCP [2001:db8::1]:50600;branch=z9hG4bK74bf9", ContentLength: 0, RoutingDomain: "2001:db8::1",
		}},
		{"from-tel-fallback-ruri", view{ // From tel: URI: the Request-URI host routes
			Request: true, Method: "OPTIONS", RequestURI: "sip:gw.example.com", TargetHost: "gw.example.com",
			FromUser: "+4930999", FromTag: "a1", ToHost: "gw.example.com",
			CallID: "ping-1@198.51.100.20", CSeq: 17, CSeqMethod: "OPTIONS",
			Via: "SIP/2.0/TCP 198.51.100.20:5060;branch=z9hG4bK-ping-1", ContentLength: 0, RoutingDomain: "gw.example.com",
		}},
		{"ack-in-dialog-lowercase", view{ // header and parameter names in any case
			Request: true, Method: "ACK", RequestURI: "sip:004930123456@203.0.113.10:5061;transport=tls",
			TargetUser: "004930123456", TargetHost: "203.0.113.10",
			FromUser: "1001", FromHost: "pbx.example.com", FromTag: "1491263485", ToUser: "004930123456", ToHost: "pbx.example.com", ToTag: "as5c1d2e3f",
			CallID: "0_2880414185@192.168.1.23", CSeq: 2, CSeqMethod: "ACK",
			Via: "SIP/2.0/TLS 192.168.1.23:5061;branch=z9hG4bK1117", ContentLength: 0, RoutingDomain: "pbx.example.com",
		}},
		{"intmeth-without-controls", view{ // RFC 4475 intmeth minus the raw control characters we refuse
			Request: true, Method: "!interesting-Method0123456789_*+`.%indeed'~",
			RequestURI: "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
			TargetUser: "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", TargetHost: "example.com",
			FromUser: "mundane", FromHost: "example.com", FromTag: "_token~1'+`*%!-.",
			ToUser: "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*", ToHost: "example.com",
			CallID: `intmeth.word%ZK-!.*_+'@word` + "`" + `~)(><:\/"][?}{`, CSeq: 139122385, CSeqMethod: "!interesting-Method0123456789_*+`.%indeed'~",
			Via: "SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~", ContentLength: 0, RoutingDomain: "example.com",
		}},
	}
	files, _ := filepath.Glob("testdata/messages/*.sip")
	if len(files) != len(tests) {
		t.Errorf("testdata/messages has %d files, table has %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readFile(t, filepath.Join("testdata", "messages", tt.file+".sip"))
			var m Message
			if err := Parse(b, &m); err != nil {
				t.Fatal(err)
			}
			tt.want.HeaderLen = headLen(b)
			if diff := cmp.Diff(tt.want, viewOf(&m)); diff != "" {
				t.Errorf("Parse (-want +got):\n%s", diff)
			}
			if m.ContentLength >= 0 && m.HeaderLen+m.ContentLength != len(b) {
				t.Errorf("HeaderLen %d + ContentLength %d != file length %d", m.HeaderLen, m.ContentLength, len(b))
			}
		})
	}
}

// TestRFC4475 runs the torture-test messages of RFC 4475 (copied from
// sipgo's testdata, see testdata/rfc4475/README). Every message the RFC
// says must be rejected (section 3.1.2 and the syntax cases of 3.3) is
// rejected; the valid messages the package refuses on purpose say why.
func TestRFC4475(t *testing.T) {
	tests := []struct {
		file string
		want error // nil: accepted
		why  string
	}{
		// 3.1.1 valid messages.
		{"longreq", nil, "valid"},
		{"dblreq", nil, "valid; the second message in the datagram is ignored"},
		{"esc02", nil, "valid"},
		{"escnull", nil, "valid; %00 stays escaped in User"},
		{"lwsdisp", nil, "valid"},
		{"mpart01", nil, "valid"},
		{"noreason", nil, "valid"},
		{"transports", nil, "valid"},
		{"unreason", nil, "valid, UTF-8 reason phrase"},
		{"wsinv", ErrFolded, "valid per RFC; refused: obsolete line folding"},
		{"esc01", ErrFolded, "valid per RFC; refused: Contact is folded"},
		{"semiuri", ErrFolded, "valid per RFC; refused: Accept is folded"},
		{"intmeth", ErrMalformed, "valid per RFC; refused: raw BEL, NUL, DEL in a quoted string (see testdata/messages/intmeth-without-controls.sip)"},
		// 3.1.2 invalid messages: all rejected.
		{"badinv01", ErrMalformed, "empty Via parameters"},
		{"clerr", ErrTruncated, "Content-Length larger than the datagram"},
		{"ncl", ErrContentLength, "negative Content-Length"},
		{"scalar02", ErrMalformed, "CSeq above 2^31"},
		{"scalarlg", ErrMalformed, "CSeq above 2^31"},
		{"quotbal", ErrMalformed, "unterminated quoted string"},
		{"ltgtruri", ErrMalformed, "<> around the Request-URI"},
		{"lwsruri", ErrMalformed, "whitespace in the Request-URI"},
		{"lwsstart", ErrMalformed, "two spaces in the request line"},
		{"trws", ErrMalformed, "trailing whitespace in the request line"},
		{"escruri", ErrMalformed, "headers in a SIP Request-URI"},
		{"baddate", nil, "semantic (Date), not a parse error"},
		{"regbadct", nil, "semantic (Contact), not scanned"},
		{"badaspec", ErrMalformed, "spaces inside <> of To"},
		{"baddn", ErrMalformed, "comma in an unquoted display name"},
		{"badvers", ErrMalformed, "SIP/7.0"},
		{"mismatch01", ErrMalformed, "CSeq method differs from the method"},
		{"mismatch02", ErrMalformed, "CSeq method differs from the method"},
		{"bigcode", ErrMalformed, "status code 4294967301"},
		// 3.2 transport.
		{"badbranch", nil, "semantic (branch without magic cookie)"},
		// 3.3 application layer: syntax errors rejected, semantics left to policy.
		{"insuf", ErrMissing, "no From, To, Call-ID"},
		{"multi01", ErrDuplicate, "two CSeq headers"},
		{"mcl01", ErrContentLength, "two different Content-Length values"},
		{"unkscm", nil, "semantic (unknown URI scheme in To): no user or host"},
		{"novelsc", nil, "semantic (unknown Request-URI scheme): no routing host"},
		{"unksm2", nil, "semantic"},
		{"bext01", nil, "semantic (Require)"},
		{"invut", nil, "semantic (Content-Type)"},
		{"regaut01", nil, "semantic"},
		{"bcast", nil, "semantic"},
		{"zeromf", nil, "semantic (Max-Forwards 0)"},
		{"cparam01", nil, "semantic (Contact)"},
		{"cparam02", nil, "semantic (Contact)"},
		{"regescrt", nil, "semantic (Contact)"},
		{"sdp01", nil, "semantic (Accept)"},
		{"inv2543", nil, "RFC 2543 syntax is still parsable"},
	}
	files, _ := filepath.Glob("testdata/rfc4475/*.dat")
	if len(files) != len(tests) {
		t.Errorf("testdata/rfc4475 has %d files, table has %d", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b := readFile(t, filepath.Join("testdata", "rfc4475", tt.file+".dat"))
			var m Message
			err := Parse(b, &m)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %v, want %v (%s)", err, tt.want, tt.why)
			}
			var pe *ParseError
			if err != nil && (!errors.As(err, &pe) || pe.At < 0 || pe.At > len(b)) {
				t.Errorf("error %v is not a *ParseError with an offset inside the input", err)
			}
		})
	}
}

const minimal = "OPTIONS sip:pbx.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n" +
	"From: <sip:a@example.com>;tag=1\r\n" +
	"To: <sip:b@example.com>\r\n" +
	"Call-ID: c1\r\n" +
	"CSeq: 1 OPTIONS\r\n"

// TestParse covers single rules, each as a small change to a minimal message.
func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
		// check, when set, inspects the parsed message.
		check func(*Message) string
	}{
		{"minimal no Content-Length", minimal + "\r\n", nil, func(m *Message) string {
			if m.ContentLength != -1 {
				return "ContentLength != -1"
			}
			return ""
		}},
		{"body after head ignored beyond Content-Length", minimal + "l: 2\r\n\r\nabcdef", nil, nil},
		{"body shorter than Content-Length", minimal + "l: 7\r\n\r\nabcdef", ErrTruncated, nil},
		{"no empty line", minimal, ErrTruncated, nil},
		{"cut in CRLF", minimal + "\r", ErrTruncated, nil},
		{"empty", "", ErrTruncated, nil},
		{"folded From", strings.Replace(minimal, "From: ", "From:\r\n ", 1) + "\r\n", ErrFolded, nil},
		{"folded with tab", strings.Replace(minimal, "tag=1", "\r\n\ttag=1", 1) + "\r\n", ErrFolded, nil},
		{"bare LF", strings.Replace(minimal, "Call-ID: c1\r\n", "Call-ID: c1\n", 1) + "\r\n", ErrMalformed, nil},
		{"bare LF blank line", minimal + "\n\n", ErrMalformed, nil},
		{"bare CR", strings.Replace(minimal, "Call-ID: c1\r\n", "Call-ID: c1\r", 1) + "\r\n", ErrMalformed, nil},
		{"NUL in value", strings.Replace(minimal, "c1", "c\x001", 1) + "\r\n", ErrMalformed, nil},
		{"header without colon", minimal + "Foo\r\n\r\n", ErrMalformed, nil},
		{"space before colon", strings.Replace(minimal, "Call-ID:", "Call-ID \t:", 1) + "\r\n", nil, nil},
		{"second From", minimal + "f: <sip:x@evil.example>\r\n\r\n", ErrDuplicate, nil},
		{"second To", minimal + "t: <sip:x@evil.example>\r\n\r\n", ErrDuplicate, nil},
		{"second Call-ID", minimal + "i: c2\r\n\r\n", ErrDuplicate, nil},
		{"same Content-Length twice", minimal + "Content-Length: 0\r\nl: 000\r\n\r\n", nil, nil},
		{"Content-Length 2^31", minimal + "l: 2147483648\r\n\r\n", ErrContentLength, nil},
		{"Content-Length huge", minimal + "l: 99999999999999999999999999999\r\n\r\n", ErrContentLength, nil},
		{"Content-Length empty", minimal + "l:\r\n\r\n", ErrContentLength, nil},
		{"Content-Length 1e3", minimal + "l: 1e3\r\n\r\n", ErrContentLength, nil},
		{"Content-Length +5", minimal + "l: +5\r\n\r\n", ErrContentLength, nil},
		{"CSeq max", strings.Replace(minimal, "CSeq: 1 ", "CSeq: 2147483647 ", 1) + "\r\n", nil, func(m *Message) string {
			if m.CSeq != 1<<31-1 {
				return "CSeq not 2^31-1"
			}
			return ""
		}},
		{"CSeq without method", strings.Replace(minimal, "CSeq: 1 OPTIONS", "CSeq: 1", 1) + "\r\n", ErrMalformed, nil},
		{"CSeq without space", strings.Replace(minimal, "CSeq: 1 OPTIONS", "CSeq: 1OPTIONS", 1) + "\r\n", ErrMalformed, nil},
		{"missing Via", strings.Replace(minimal, "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n", "", 1) + "\r\n", ErrMissing, nil},
		{"missing CSeq", strings.Replace(minimal, "CSeq: 1 OPTIONS\r\n", "", 1) + "\r\n", ErrMissing, nil},
		{"missing Call-ID", strings.Replace(minimal, "Call-ID: c1\r\n", "", 1) + "\r\n", ErrMissing, nil},
		{"Call-ID with space", strings.Replace(minimal, "c1", "c 1", 1) + "\r\n", ErrMalformed, nil},
		{"second Via kept first", minimal + "v: SIP/2.0/UDP 198.51.100.1\r\n\r\n", nil, func(m *Message) string {
			if string(m.Via) != "SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1" {
				return "Via is not the top one"
			}
			return ""
		}},
		{"Via with spaces around slashes", strings.Replace(minimal, "SIP/2.0/TCP 192.0.2.1", "SIP / 2.0 / TCP  192.0.2.1:5060", 1) + "\r\n", nil, nil},
		{"Via not SIP", strings.Replace(minimal, "SIP/2.0/TCP", "HTTP/1.1/TCP", 1) + "\r\n", ErrMalformed, nil},
		{"Via without host", strings.Replace(minimal, "SIP/2.0/TCP 192.0.2.1", "SIP/2.0/TCP", 1) + "\r\n", ErrMalformed, nil},
		{"response", "SIP/2.0 180 Ringing\r\n" + minimal[strings.Index(minimal, "\r\n")+2:] + "\r\n", nil, func(m *Message) string {
			if m.Request || m.Status != 180 || m.Method != nil || m.RoutingDomain() != nil {
				return "not a 180 response"
			}
			return ""
		}},
		{"response no reason", "SIP/2.0 200\r\n" + minimal[strings.Index(minimal, "\r\n")+2:] + "\r\n", nil, nil},
		{"response code 099", "SIP/2.0 099 X\r\n" + minimal[strings.Index(minimal, "\r\n")+2:] + "\r\n", ErrMalformed, nil},
		{"response code 700", "SIP/2.0 700 X\r\n" + minimal[strings.Index(minimal, "\r\n")+2:] + "\r\n", ErrMalformed, nil},
		{"response code 2000", "SIP/2.0 2000 X\r\n" + minimal[strings.Index(minimal, "\r\n")+2:] + "\r\n", ErrMalformed, nil},
		{"lower-case version", strings.Replace(minimal, " SIP/2.0\r\n", " sip/2.0\r\n", 1) + "\r\n", ErrMalformed, nil},
		{"HTTP request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ErrMalformed, nil},
		{"leading CRLF", "\r\n" + minimal + "\r\n", ErrMalformed, nil},
		{"method not token", strings.Replace(minimal, "OPTIONS sip", "OPT(ONS sip", 1) + "\r\n", ErrMalformed, nil},
		{"Request-URI no scheme", strings.Replace(minimal, "sip:pbx.example.com SIP", "pbx.example.com SIP", 1) + "\r\n", ErrMalformed, nil},
		{"Request-URI urn", strings.Replace(minimal, "sip:pbx.example.com SIP", "urn:service:sos SIP", 1) + "\r\n", nil, func(m *Message) string {
			if m.RoutingDomain() == nil || string(m.RoutingDomain()) != "example.com" || m.Target.Host != nil {
				return "urn: Request-URI gave a host"
			}
			return ""
		}},
		{"From name-addr with quoted <", strings.Replace(minimal, "From: <sip:a@example.com>", `From: "a<b>\"c" <sip:a@x.example:5060;transport=tcp?h=v>`, 1) + "\r\n", nil, func(m *Message) string {
			if string(m.From.Host) != "x.example" || string(m.From.User) != "a" || string(m.From.Tag) != "1" {
				return "quoted display name confused the address"
			}
			return ""
		}},
		{"From addr-spec params with spaces", strings.Replace(minimal, "From: <sip:a@example.com>;tag=1", "From: sip:a@example.com ; foo ; tag = 9 ; bar=\"x;y\"", 1) + "\r\n", nil, func(m *Message) string {
			if string(m.From.Tag) != "9" || string(m.From.Host) != "example.com" {
				return "addr-spec parameters not parsed"
			}
			return ""
		}},
		{"From two tags", strings.Replace(minimal, ";tag=1", ";tag=1;TAG=2", 1) + "\r\n", ErrMalformed, nil},
		{"From quoted tag", strings.Replace(minimal, ";tag=1", `;tag="1"`, 1) + "\r\n", ErrMalformed, nil},
		{"From unterminated quote", strings.Replace(minimal, "From: <", `From: "Alice <`, 1) + "\r\n", ErrMalformed, nil},
		{"From without >", strings.Replace(minimal, "example.com>;tag=1", "example.com;tag=1", 1) + "\r\n", ErrMalformed, nil},
		{"From two addresses", strings.Replace(minimal, ";tag=1", ";tag=1, <sip:x@evil.example>", 1) + "\r\n", ErrMalformed, nil},
		{"From user@user@host", strings.Replace(minimal, "sip:a@example.com", "sip:a@evil.example@example.com", 1) + "\r\n", ErrMalformed, nil},
		{"From empty user", strings.Replace(minimal, "sip:a@example.com", "sip:@example.com", 1) + "\r\n", ErrMalformed, nil},
		{"From empty host", strings.Replace(minimal, "sip:a@example.com", "sip:a@", 1) + "\r\n", ErrMalformed, nil},
		{"From bad port", strings.Replace(minimal, "sip:a@example.com", "sip:a@example.com:65536", 1) + "\r\n", ErrMalformed, nil},
		{"From port", strings.Replace(minimal, "sip:a@example.com", "SIPS:a@example.com:65535", 1) + "\r\n", nil, nil},
		{"From unclosed IPv6", strings.Replace(minimal, "sip:a@example.com", "sip:a@[2001:db8::1", 1) + "\r\n", ErrMalformed, nil},
		{"From IPv6 junk", strings.Replace(minimal, "sip:a@example.com", "sip:a@[2001:db8::g]", 1) + "\r\n", ErrMalformed, nil},
		{"To empty", strings.Replace(minimal, "To: <sip:b@example.com>", "To:", 1) + "\r\n", ErrMalformed, nil},
		{"Authorization first with username wins", minimal + "Authorization: Bearer abc\r\nProxy-Authorization: Digest realm=\"r\", username=\"u1\"\r\nAuthorization: Digest username=\"u2\"\r\n\r\n", nil, func(m *Message) string {
			if string(m.AuthUser) != "u1" {
				return "AuthUser = " + string(m.AuthUser)
			}
			return ""
		}},
		{"Authorization escaped quote", minimal + "Authorization: Digest username=\"a\\\"b\", realm=x\r\n\r\n", nil, func(m *Message) string {
			if string(m.AuthUser) != `a\"b` {
				return "AuthUser = " + string(m.AuthUser)
			}
			return ""
		}},
		{"Authorization without username", minimal + "Authorization: Digest realm=\"r\"\r\n\r\n", ErrMalformed, nil},
		{"Authorization two usernames", minimal + "Authorization: Digest username=a, username=b\r\n\r\n", ErrMalformed, nil},
		{"Authorization unterminated", minimal + "Authorization: Digest username=\"a\r\n\r\n", ErrMalformed, nil},
		{"User-Agent first", minimal + "User-Agent: one\r\nUser-Agent: two\r\n\r\n", nil, func(m *Message) string {
			if string(m.UserAgent) != "one" {
				return "UserAgent = " + string(m.UserAgent)
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := Parse([]byte(tt.in), &m)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Parse = %v, want %v", err, tt.want)
			}
			if err == nil && tt.check != nil {
				if msg := tt.check(&m); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// TestParseLarge: a 64 KB datagram is parsed in one piece; garbage is
// refused with a *ParseError.
func TestParseLarge(t *testing.T) {
	pad := "X-Pad: " + strings.Repeat("a", 65535-len(minimal)-len("X-Pad: \r\n\r\n")) + "\r\n"
	b := []byte(minimal + pad + "\r\n")
	if len(b) != 65535 {
		t.Fatalf("test message has %d bytes", len(b))
	}
	var m Message
	if err := Parse(b, &m); err != nil || m.HeaderLen != len(b) {
		t.Fatalf("Parse(64 KB) = %v, HeaderLen %d", err, m.HeaderLen)
	}
	garbage := make([]byte, 65535)
	x := uint32(1)
	for i := range garbage {
		x = x*1664525 + 1013904223
		garbage[i] = byte(x >> 24)
	}
	var pe *ParseError
	if err := Parse(garbage, &m); !errors.As(err, &pe) {
		t.Fatalf("Parse(garbage) = %v", err)
	}
}

// TestParsePrefixes: every proper prefix of a valid message head is
// ErrTruncated, never accepted and never another error.
func TestParsePrefixes(t *testing.T) {
	b := readFile(t, "testdata/messages/register-yealink-digest.sip")
	for i := range len(b) - 1 {
		var m Message
		if err := Parse(b[:i], &m); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Parse(first %d bytes) = %v, want ErrTruncated", i, err)
		}
	}
}

func TestParseErrorText(t *testing.T) {
	var m Message
	err := Parse([]byte(strings.Replace(minimal, "From: ", "From:\r\n ", 1)+"\r\n"), &m)
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %T is not a *ParseError", err)
	}
	want := "sip: folded header line: header line starts with whitespace (obsolete line folding) at offset " +
		strconv.Itoa(strings.Index(minimal, "From: ")+len("From:\r\n"))
	if pe.Error() != want {
		t.Errorf("Error() = %q, want %q", pe.Error(), want)
	}
}
