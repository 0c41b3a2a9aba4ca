package sip

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	sipgo "github.com/emiago/sipgo/sip"
)

const tagFixed = "t0t1t2t3"

// multiVia is a request that went through two proxies, one of which joined
// its Via values with a comma, with odd spacing and a To without brackets.
const multiVia = "INVITE sip:1002@pbx.example.com SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP proxy2.example.net;branch=z9hG4bKp2, SIP/2.0/TCP proxy1.example.net:5070;branch=z9hG4bKp1\r\n" +
	"Max-Forwards: 68\r\n" +
	"From: \"Alice\" <sip:1001@pbx.example.com>;tag=a1\r\n" +
	"Via : SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKua;rport  \r\n" +
	"To: sip:1002@pbx.example.com;user=phone\r\n" +
	"User-Agent: friendly-scanner\r\n" +
	"Call-ID:   c9@192.0.2.10\r\n" +
	"v: SIP/2.0/UDP 192.0.2.11;branch=z9hG4bKlast\r\n" +
	"CSeq: 7 INVITE\r\n" +
	"Content-Length: 0\r\n\r\n"

func TestAppendResponseGolden(t *testing.T) {
	tests := []struct {
		name, req string
		status    int
		reason    string
		want      string
	}{
		{name: "minimal 403", req: minimal + "\r\n", status: 403, want: "SIP/2.0 403 Forbidden\r\n" +
			"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n" +
			"From: <sip:a@example.com>;tag=1\r\n" +
			"To: <sip:b@example.com>;tag=" + tagFixed + "\r\n" +
			"Call-ID: c1\r\n" +
			"CSeq: 1 OPTIONS\r\n" +
			"Content-Length: 0\r\n\r\n"},
		{name: "multiple Via kept in order, others after", req: multiVia, status: 503, reason: "Try Later", want: "SIP/2.0 503 Try Later\r\n" +
			"Via: SIP/2.0/UDP proxy2.example.net;branch=z9hG4bKp2, SIP/2.0/TCP proxy1.example.net:5070;branch=z9hG4bKp1\r\n" +
			"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKua;rport\r\n" +
			"v: SIP/2.0/UDP 192.0.2.11;branch=z9hG4bKlast\r\n" +
			"From: \"Alice\" <sip:1001@pbx.example.com>;tag=a1\r\n" +
			"To: sip:1002@pbx.example.com;user=phone;tag=" + tagFixed + "\r\n" +
			"Call-ID: c9@192.0.2.10\r\n" +
			"CSeq: 7 INVITE\r\n" +
			"Content-Length: 0\r\n\r\n"},
		{name: "To tag kept", req: strings.Replace(minimal, "<sip:b@example.com>", "<sip:b@example.com>;tag=x9", 1) + "\r\n",
			status: 481, want: "SIP/2.0 481 Call/Transaction Does Not Exist\r\n" +
				"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n" +
				"From: <sip:a@example.com>;tag=1\r\n" +
				"To: <sip:b@example.com>;tag=x9\r\n" +
				"Call-ID: c1\r\n" +
				"CSeq: 1 OPTIONS\r\n" +
				"Content-Length: 0\r\n\r\n"},
		{name: "unknown code gets class phrase", req: minimal + "\r\n", status: 499, want: "SIP/2.0 499 Client Error\r\n" +
			"Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bK1\r\n" +
			"From: <sip:a@example.com>;tag=1\r\n" +
			"To: <sip:b@example.com>;tag=" + tagFixed + "\r\n" +
			"Call-ID: c1\r\n" +
			"CSeq: 1 OPTIONS\r\n" +
			"Content-Length: 0\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := []byte(tt.req)
			var m Message
			if err := Parse(req, &m); err != nil {
				t.Fatal(err)
			}
			prefix := []byte("keep")
			got, err := AppendResponse(prefix, req, &m, tt.status, tt.reason, []byte(tagFixed))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("dst prefix lost: %q", got)
			}
			if string(got[len(prefix):]) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got[len(prefix):], tt.want)
			}
			mustSipgo(t, req)
			checkResponse(t, req, &m, got[len(prefix):], tt.status, tagFixed)
		})
	}
}

// TestAppendResponseMessages answers every request in testdata/messages
// and a few built here, with several status codes and a fresh tag.
func TestAppendResponseMessages(t *testing.T) {
	reqs := map[string][]byte{
		"multi-via":   []byte(multiVia),
		"minimal":     []byte(minimal + "\r\n"),
		"compact-all": []byte("MESSAGE sip:1002@pbx.example.com SIP/2.0\r\nv: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK2\r\nf: <sip:1001@pbx.example.com>;tag=2\r\nt: <sip:1002@pbx.example.com>\r\ni: c2@192.0.2.1\r\nCSeq: 2 MESSAGE\r\nl: 5\r\n\r\nhello"),
	}
	files, _ := filepath.Glob("testdata/messages/*.sip")
	for _, f := range files {
		reqs[strings.TrimSuffix(filepath.Base(f), ".sip")] = readFile(t, f)
	}
	requests := 0
	for name, req := range reqs {
		var m Message
		if err := Parse(req, &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !m.Request || string(m.Method) == "ACK" {
			continue
		}
		requests++
		for _, status := range []int{100, 180, 200, 401, 403, 404, 408, 488, 503, 603} {
			t.Run(fmt.Sprintf("%s/%d", name, status), func(t *testing.T) {
				tag := NewTag(nil)
				resp, err := AppendResponse(nil, req, &m, status, "", tag)
				if err != nil {
					t.Fatal(err)
				}
				mustSipgo(t, req)
				checkResponse(t, req, &m, resp, status, string(tag))
			})
		}
	}
	if requests < 8 {
		t.Fatalf("only %d requests answered; testdata changed?", requests)
	}
}

// checkResponse parses resp with this package and with sipgo and compares
// it with the request.
func checkResponse(t *testing.T, req []byte, m *Message, resp []byte, status int, tag string) {
	t.Helper()
	var r Message
	if err := Parse(resp, &r); err != nil {
		t.Fatalf("own parser refuses the response: %v\n%s", err, resp)
	}
	if r.Request || r.Status != status || r.HeaderLen != len(resp) || r.ContentLength != 0 {
		t.Fatalf("parsed response: request=%v status=%d headerLen=%d/%d CL=%d", r.Request, r.Status, r.HeaderLen, len(resp), r.ContentLength)
	}
	if !bytes.Equal(r.CallID, m.CallID) || r.CSeq != m.CSeq || !bytes.Equal(r.CSeqMethod, m.CSeqMethod) || !bytes.Equal(r.Via, m.Via) {
		t.Fatalf("Call-ID/CSeq/Via differ: %q %d %q %q, request %q %d %q %q", r.CallID, r.CSeq, r.CSeqMethod, r.Via, m.CallID, m.CSeq, m.CSeqMethod, m.Via)
	}
	if !bytes.Equal(r.From.User, m.From.User) || !bytes.Equal(r.From.Host, m.From.Host) || !bytes.Equal(r.From.Tag, m.From.Tag) {
		t.Fatalf("From differs: %+v, request %+v", r.From, m.From)
	}
	wantTag := string(m.To.Tag)
	if m.To.Tag == nil {
		wantTag = tag
	}
	if !bytes.Equal(r.To.User, m.To.User) || !bytes.Equal(r.To.Host, m.To.Host) || string(r.To.Tag) != wantTag {
		t.Fatalf("To differs: %+v, request %+v, want tag %q", r.To, m.To, wantTag)
	}
	if r.UserAgent != nil || r.AuthUser != nil {
		t.Fatalf("response carries User-Agent or credentials:\n%s", resp)
	}

	if n, want := countVia(resp), countVia(req); n != want || n == 0 {
		t.Fatalf("%d Via values in response, %d in request", n, want)
	}

	// sipgo must read the response whenever it reads the request (it
	// refuses some requests this package accepts, e.g. with a malformed
	// lower Via, which the response has to copy unchanged).
	gq, err := sipgo.ParseMessage(bytes.Clone(req))
	if err != nil {
		return
	}
	g, err := sipgo.ParseMessage(bytes.Clone(resp))
	if err != nil {
		t.Fatalf("sipgo reads the request but refuses the response: %v\n%s", err, resp)
	}
	gr, ok := g.(*sipgo.Response)
	if !ok || gr.StatusCode != status {
		t.Fatalf("sipgo: %T status %v", g, g)
	}
	// sipgo's view of the response matches its view of the request
	// (the two parsers can disagree on a request: sipgo, for one, matches
	// parameter names case-sensitively, so "tAg=x" is no tag to it).
	if q, r := gq.CallID(), gr.CallID(); q == nil || r == nil || q.Value() != r.Value() {
		t.Fatalf("sipgo Call-ID: request %v, response %v", q, r)
	}
	if q, r := gq.CSeq(), gr.CSeq(); q == nil || r == nil || q.Value() != r.Value() {
		t.Fatalf("sipgo CSeq: request %v, response %v", q, r)
	}
	if q, r := gq.From(), gr.From(); q == nil || r == nil || q.Value() != r.Value() {
		t.Fatalf("sipgo From: request %v, response %v", q, r)
	}
	q, rt := gq.To(), gr.To()
	if q == nil || rt == nil {
		t.Fatalf("sipgo To: request %v, response %v", q, rt)
	}
	if _, tagged := q.Params.Get("tag"); tagged {
		if q.Value() != rt.Value() {
			t.Fatalf("sipgo To: request %v, response %v", q, rt)
		}
	} else if m.To.Tag == nil && !paramIs(rt.Params, "tag", wantTag) {
		t.Fatalf("sipgo To %v, want tag %q", rt, wantTag)
	}
	// Via: sipgo sees the same Via values in the same order.
	if qv, rv := sipgoVias(gq), sipgoVias(g); !equalStrings(qv, rv) || len(qv) == 0 {
		t.Fatalf("sipgo Via values: request %q, response %q", qv, rv)
	}
}

// mustSipgo fails unless sipgo reads req, so that checkResponse does
// compare with sipgo for the hand-picked requests.
func mustSipgo(t *testing.T, req []byte) {
	t.Helper()
	if _, err := sipgo.ParseMessage(bytes.Clone(req)); err != nil {
		t.Fatalf("sipgo refuses the request: %v", err)
	}
}

func paramIs(p sipgo.HeaderParams, name, want string) bool {
	v, ok := p.Get(name)
	return ok == (want != "") && v == want
}

func sipgoVias(g sipgo.Message) []string {
	hg, ok := g.(interface{ Headers() []sipgo.Header })
	if !ok {
		return nil
	}
	var out []string
	for _, h := range hg.Headers() {
		if n := strings.ToLower(h.Name()); n == "via" || n == "v" {
			out = append(out, h.Value())
		}
	}
	return out
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// countVia counts Via values (comma-separated, outside quotes) in a head,
// independently of AppendResponse's scanner.
func countVia(b []byte) int {
	n := 0
	head := b[:headLen(b)]
	lines := strings.Split(string(head), "\r\n")
	for _, l := range lines[1:] {
		name, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "via" && name != "v" {
			continue
		}
		n++
		for i, inq := 0, false; i < len(v); i++ {
			switch {
			case inq && v[i] == '\\':
				i++
			case v[i] == '"':
				inq = !inq
			case !inq && v[i] == ',':
				n++
			}
		}
	}
	return n
}

func TestAppendResponseErrors(t *testing.T) {
	parse := func(s string) ([]byte, *Message) {
		b := []byte(s)
		var m Message
		if err := Parse(b, &m); err != nil {
			t.Fatal(err)
		}
		return b, &m
	}
	req, m := parse(minimal + "\r\n")
	resp, rm := parse(string(readFile(t, "testdata/messages/ok-200-totag-sdp.sip")))
	ack, am := parse(string(readFile(t, "testdata/messages/ack-in-dialog-lowercase.sip")))
	short := *m
	short.HeaderLen = len(req) + 1
	tests := []struct {
		name   string
		req    []byte
		m      *Message
		status int
		reason string
		tag    string
		want   error
	}{
		{"response", resp, rm, 200, "", tagFixed, ErrNoResponse},
		{"nil message", req, nil, 200, "", tagFixed, ErrNoResponse},
		{"ACK", ack, am, 200, "", tagFixed, ErrNoResponse},
		{"status 99", req, m, 99, "", tagFixed, ErrResponseArg},
		{"status 700", req, m, 700, "", tagFixed, ErrResponseArg},
		{"reason CRLF", req, m, 403, "No\r\nX-Injected: 1", tagFixed, ErrResponseArg},
		{"reason DEL", req, m, 403, "No\x7f", tagFixed, ErrResponseArg},
		{"reason UTF-8", req, m, 403, "Verboten\xc3\xa4", tagFixed, ErrResponseArg},
		{"no tag", req, m, 403, "", "", ErrResponseArg},
		{"tag not a token", req, m, 403, "", "a b", ErrResponseArg},
		{"tag with CRLF", req, m, 403, "", "a\r\nb", ErrResponseArg},
		{"HeaderLen beyond buffer", req, &short, 403, "", tagFixed, ErrResponseArg},
		{"buffer is not the parsed request", []byte("OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n"), m, 403, "", tagFixed, ErrResponseArg},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, 3, 1024)
			copy(dst, "abc")
			got, err := AppendResponse(dst, tt.req, tt.m, tt.status, tt.reason, []byte(tt.tag))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if string(got) != "abc" {
				t.Fatalf("dst changed on error: %q", got)
			}
		})
	}
}

// TestAppendResponseTrying: 100 Trying may go without a To tag (RFC 3261
// 8.2.6.2); with a tag given it gets one like any other response.
func TestAppendResponseTrying(t *testing.T) {
	req := []byte(minimal + "\r\n")
	var m Message
	if err := Parse(req, &m); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"", tagFixed} {
		resp, err := AppendResponse(nil, req, &m, 100, "", []byte(tag))
		if err != nil {
			t.Fatal(err)
		}
		checkResponse(t, req, &m, resp, 100, tag)
		if !bytes.HasPrefix(resp, []byte("SIP/2.0 100 Trying\r\n")) {
			t.Fatalf("status line: %q", resp)
		}
	}
}

func TestAppendResponseFromHeaderLikeCallID(t *testing.T) {
	// X-Call-ID must not be mistaken for Call-ID.
	req := []byte(strings.Replace(minimal, "Call-ID: c1", "X-Call-ID: wrong", 1) + "Call-ID: c1\r\n\r\n")
	var m Message
	if err := Parse(req, &m); err != nil {
		t.Fatal(err)
	}
	resp, err := AppendResponse(nil, req, &m, 404, "", []byte(tagFixed))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(resp, []byte("wrong")) {
		t.Fatalf("copied X-Call-ID:\n%s", resp)
	}
	checkResponse(t, req, &m, resp, 404, tagFixed)
}

func TestReasonPhrase(t *testing.T) {
	for _, code := range []int{100, 180, 200, 400, 401, 403, 404, 407, 408, 480, 481, 482, 483, 486, 487, 488, 500, 501, 503, 603} {
		if p := ReasonPhrase(code); p == "" || strings.TrimSpace(p) != p {
			t.Errorf("ReasonPhrase(%d) = %q", code, p)
		}
	}
	for code, want := range map[int]string{200: "OK", 403: "Forbidden", 503: "Service Unavailable", 0: "", 299: "", 700: ""} {
		if got := ReasonPhrase(code); got != want {
			t.Errorf("ReasonPhrase(%d) = %q, want %q", code, got, want)
		}
	}
	for code := 100; code <= 699; code++ {
		p := ReasonPhrase(code)
		if p == "" {
			p = classPhrase(code)
		}
		if p == "" {
			t.Fatalf("no phrase for %d", code)
		}
	}
}

func TestNewTag(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tag := NewTag([]byte("x"))
		if len(tag) != 1+TagLen || tag[0] != 'x' {
			t.Fatalf("NewTag = %q", tag)
		}
		if !isTokenBytes(tag[1:]) || strings.Trim(string(tag[1:]), tagAlphabet) != "" {
			t.Fatalf("tag %q has characters outside the alphabet", tag)
		}
		if seen[string(tag)] {
			t.Fatalf("tag %q repeated", tag)
		}
		seen[string(tag)] = true
	}
}

func TestAppendResponseAllocs(t *testing.T) {
	for _, name := range []string{"register-yealink-digest", "invite-sdp-proxy-auth", "compact-ipv6-tel"} {
		req := readFile(t, "testdata/messages/"+name+".sip")
		var m Message
		if err := Parse(req, &m); err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			buf := make([]byte, 0, 2048)
			tag := make([]byte, 0, TagLen)
			if a := testing.AllocsPerRun(100, func() {
				tag = NewTag(tag[:0])
				out, err := AppendResponse(buf[:0], req, &m, 403, "", tag)
				if err != nil || len(out) == 0 {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("NewTag+AppendResponse allocate %v times", a)
			}
		})
	}
}

func BenchmarkAppendResponse(b *testing.B) {
	req := readFile(b, "testdata/messages/register-yealink-digest.sip")
	var m Message
	if err := Parse(req, &m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 2048)
	tag := NewTag(nil)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = AppendResponse(buf[:0], req, &m, 401, "", tag); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewTag(b *testing.B) {
	tag := make([]byte, 0, TagLen)
	b.ReportAllocs()
	for b.Loop() {
		tag = NewTag(tag[:0])
	}
}

// FuzzAppendResponse: for every request other than ACK that Parse
// accepts, AppendResponse succeeds and its output parses with this package
// and sipgo, carrying the request's Call-ID, CSeq, From, To (plus tag) and
// Via values. sipgo's Via values are compared only when sipgo accepts the
// request too (it refuses some requests this package accepts, e.g. with a
// bad second Via).
func FuzzAppendResponse(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b, uint16(403))
	}
	f.Add([]byte(multiVia), uint16(100))
	f.Fuzz(func(t *testing.T, b []byte, status uint16) {
		if len(b) > 1<<16 {
			b = b[:1<<16]
		}
		var m Message
		if err := Parse(b, &m); err != nil {
			return
		}
		code := 100 + int(status)%600
		resp, err := AppendResponse(nil, b, &m, code, "", []byte(tagFixed))
		if !m.Request || string(m.Method) == "ACK" {
			if !errors.Is(err, ErrNoResponse) {
				t.Fatalf("answered a response or ACK: %v", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		checkResponse(t, b, &m, resp, code, tagFixed)
	})
}

// TestUpdateResponseCorpus checks testdata/fuzz/FuzzAppendResponse, or
// rewrites it with -update-corpus (the flag of corpus_test.go).
func TestUpdateResponseCorpus(t *testing.T) {
	s := seeds(t)
	for i, name := range sortedNames(s) {
		writeSeed(t, "FuzzAppendResponse", name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint16(%d)\n", s[name], []int{403, 100, 401, 503, 299}[i%5]))
	}
	writeSeed(t, "FuzzAppendResponse", "multi-via", fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint16(%d)\n", multiVia, 0))
}

func TestResponseCorpusPresent(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzAppendResponse", "*"))
	if len(files) < 10 {
		t.Errorf("testdata/fuzz/FuzzAppendResponse has %d seeds, want at least 10", len(files))
	}
}
