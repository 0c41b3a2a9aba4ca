package sip

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	sipgo "github.com/emiago/sipgo/sip"
)

// seeds returns every message in testdata plus hand-made edge cases.
func seeds(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	for _, pat := range []string{"testdata/messages/*.sip", "testdata/rfc4475/*.dat"} {
		files, _ := filepath.Glob(pat)
		for _, f := range files {
			out[strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))] = readFile(t, f)
		}
	}
	for i, s := range []string{
		"", "\r\n", "\r\n\r\n", "\r", "\n", "SIP/2.0 200 OK\r\n\r\n", minimal + "\r\n",
		minimal + "l: 3\r\n\r\nabc", minimal + "l: 3\r\n\r\nab", minimal + "l: 2147483648\r\n\r\n",
		strings.Replace(minimal, "From: ", "From:\r\n ", 1) + "\r\n",
		strings.Replace(minimal, "<sip:a@example.com>", `"x\"<" <sips:u:p@[::1]:5061;transport=tls>`, 1) + "\r\n",
		strings.Replace(minimal, "<sip:a@example.com>", "tel:+123;phone-context=x", 1) + "\r\n",
		minimal + "Authorization: Digest username=\"u\",realm=r\r\n\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
	} {
		out["edge-"+strconv.Itoa(i)] = []byte(s)
	}
	return out
}

// within reports whether s is nil or lies inside b.
func within(b, s []byte) bool {
	if s == nil {
		return true
	}
	if len(s) == 0 {
		return true // an empty slice's address is immaterial
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= lo && p+uintptr(len(s)) <= lo+uintptr(len(b))
}

func checkInvariants(t *testing.T, b []byte, m *Message, err error) {
	t.Helper()
	if err != nil {
		var pe *ParseError
		if !errors.As(err, &pe) || pe.At < 0 || pe.At > len(b) || pe.Err == nil {
			t.Fatalf("error %v is not a *ParseError with an offset inside the input", err)
		}
		return
	}
	if m.HeaderLen != headLen(b) {
		t.Fatalf("HeaderLen %d, first CRLFCRLF ends at %d", m.HeaderLen, headLen(b))
	}
	if m.ContentLength > len(b)-m.HeaderLen || m.ContentLength < -1 {
		t.Fatalf("ContentLength %d with %d body bytes", m.ContentLength, len(b)-m.HeaderLen)
	}
	for _, s := range [][]byte{m.Method, m.RequestURI, m.Target.User, m.Target.Host, m.From.User, m.From.Host, m.From.Tag,
		m.To.User, m.To.Host, m.To.Tag, m.CallID, m.CSeqMethod, m.Via, m.UserAgent, m.AuthUser} {
		if !within(b[:m.HeaderLen], s) {
			t.Fatalf("field %q does not alias the head", s)
		}
	}
	if m.Request != (m.Status == 0) || !m.Request && (m.Status < 100 || m.Status > 699) {
		t.Fatalf("Request %v with Status %d", m.Request, m.Status)
	}
	if m.Request && !bytes.Equal(m.Method, m.CSeqMethod) || m.CSeq > maxScalar {
		t.Fatalf("CSeq %d %q for method %q", m.CSeq, m.CSeqMethod, m.Method)
	}
	if len(m.CallID) == 0 || len(m.Via) == 0 {
		t.Fatalf("accepted without Call-ID or Via")
	}
	if d := m.RoutingDomain(); d != nil && !bytes.Equal(d, m.From.Host) && !bytes.Equal(d, m.Target.Host) {
		t.Fatalf("RoutingDomain %q is neither From nor Request-URI host", d)
	}
	// A message Parse accepts with a Content-Length is one frame.
	if m.ContentLength >= 0 {
		var f Framer
		n, ka, ferr := f.Next(b[:m.HeaderLen+m.ContentLength], nil)
		if ferr != nil || ka || n != m.HeaderLen+m.ContentLength {
			t.Fatalf("Framer.Next on the parsed message = %d, %v, %v", n, ka, ferr)
		}
	}
}

// FuzzParse checks Parse's invariants and compares it with sipgo's parser.
//
// Where both accept, they agree on request/response, method, status,
// Call-ID, CSeq, From host (ignoring case and IPv6 brackets), To tag and
// Content-Length. sipgo upper-cases methods (RFC 3261 7.1 says they are
// case-sensitive; this package keeps them as written) and reports the body
// length of a datagram without Content-Length (this package: -1), so those
// are compared accordingly. Known deliberate differences, where only one accepts, are
// not compared: this package refuses line folding, raw control characters,
// duplicated From/To/Call-ID/CSeq, a CSeq method unlike the request method,
// headers in a SIP Request-URI, malformed top Via and Digest credentials and
// a missing Via; sipgo refuses some inputs this package does not look at
// (Contact, Max-Forwards, ...).
func FuzzParse(f *testing.F) {
	for _, b := range seeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			b = b[:1<<16]
		}
		var m Message
		err := Parse(b, &m)
		checkInvariants(t, b, &m, err)
		if err != nil {
			return
		}
		g, gerr := sipgo.ParseMessage(bytes.Clone(b))
		if gerr != nil {
			return
		}
		compareSipgo(t, b, &m, g)
	})
}

func compareSipgo(t *testing.T, b []byte, m *Message, g sipgo.Message) {
	t.Helper()
	switch g := g.(type) {
	case *sipgo.Request:
		if !m.Request || !strings.EqualFold(string(g.Method), string(m.Method)) {
			t.Fatalf("%q: sipgo request %q, ours request=%v %q", b, g.Method, m.Request, m.Method)
		}
	case *sipgo.Response:
		if m.Request || g.StatusCode != m.Status {
			t.Fatalf("%q: sipgo status %d, ours request=%v %d", b, g.StatusCode, m.Request, m.Status)
		}
	}
	if h := g.CallID(); h == nil || h.Value() != string(m.CallID) {
		t.Fatalf("%q: Call-ID sipgo %v, ours %q", b, h, m.CallID)
	}
	if h := g.CSeq(); h == nil || h.SeqNo != m.CSeq || !strings.EqualFold(string(h.MethodName), string(m.CSeqMethod)) {
		t.Fatalf("%q: CSeq sipgo %v, ours %d %q", b, h, m.CSeq, m.CSeqMethod)
	}
	if h := g.From(); h != nil && m.From.Host != nil {
		host := strings.TrimSuffix(strings.TrimPrefix(h.Address.Host, "["), "]")
		if !strings.EqualFold(host, string(m.From.Host)) {
			t.Fatalf("%q: From host sipgo %q, ours %q", b, h.Address.Host, m.From.Host)
		}
	}
	if h := g.To(); h != nil {
		// sipgo matches parameter names case-sensitively; RFC 3261 says
		// they are not, so a "tAg" only this package sees is skipped.
		tag, _ := h.Params.Get("tag")
		if tag != string(m.To.Tag) && !otherCaseTag(h.Params) {
			t.Fatalf("%q: To tag sipgo %q, ours %q", b, tag, m.To.Tag)
		}
	}
	cl, want := -1, m.ContentLength
	if h := g.ContentLength(); h != nil {
		cl = int(*h)
	}
	if want < 0 && len(b) > m.HeaderLen {
		want = len(b) - m.HeaderLen // sipgo fills in the datagram's body length
	}
	if cl != want {
		t.Fatalf("%q: Content-Length sipgo %d, ours %d", b, cl, m.ContentLength)
	}
}

// FuzzFramer: feeding a stream in random chunk sizes yields the same
// messages, keep-alive bytes, error and leftover as feeding it whole, and
// Next never claims more bytes than it was given (checked in frameAll).
func FuzzFramer(f *testing.F) {
	s := seeds(f)
	f.Add([]byte(reg+msgBody+"\r\n\r\n"+reg), uint64(1))
	f.Add([]byte("\r\n"+reg+"\r\n\r\n\r"), uint64(7))
	for _, name := range []string{"register-yealink-digest", "invite-sdp-proxy-auth", "ok-200-totag-sdp", "dblreq", "mcl01", "wsinv"} {
		f.Add(append(append([]byte("\r\n\r\n"), s[name]...), s["compact-ipv6-tel"]...), uint64(len(name)))
	}
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		if len(stream) > 1<<17 {
			stream = stream[:1<<17]
		}
		max := 0
		if seed&1 == 1 {
			max = 200 + int(seed>>1)%2000 // exercise small limits too
		}
		var fw, fc Framer
		fw.MaxMessage, fc.MaxMessage = max, max
		wantFrames, wantRest, wantErr := frameAll(t, &fw, stream, whole(stream))
		x := seed | 1
		gotFrames, gotRest, gotErr := frameAll(t, &fc, stream, func() int {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			return 1 + int(x%64)
		})
		if (wantErr == nil) != (gotErr == nil) || wantErr != nil && !errors.Is(gotErr, errors.Unwrap(wantErr)) {
			t.Fatalf("error whole %v, chunked %v", wantErr, gotErr)
		}
		wantFrames, gotFrames = mergeKeepalives(wantFrames), mergeKeepalives(gotFrames)
		if len(wantFrames) != len(gotFrames) {
			t.Fatalf("whole gave %d frames, chunked %d", len(wantFrames), len(gotFrames))
		}
		for i := range wantFrames {
			if wantFrames[i] != gotFrames[i] {
				t.Fatalf("frame %d whole %+v, chunked %+v", i, wantFrames[i], gotFrames[i])
			}
		}
		if wantErr == nil && !bytes.Equal(wantRest, gotRest) {
			t.Fatalf("leftover whole %q, chunked %q", wantRest, gotRest)
		}
	})
}

// TestCorpusPresent: the committed seed corpora exist (go test runs them).
func TestCorpusPresent(t *testing.T) {
	for _, dir := range []string{"FuzzParse", "FuzzFramer"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		if len(files) < 10 {
			t.Errorf("testdata/fuzz/%s has %d seeds, want at least 10", dir, len(files))
		}
	}
	if _, err := os.Stat("testdata/rfc4475/README"); err != nil {
		t.Error(err)
	}
}

// otherCaseTag reports whether params has a tag parameter spelled in
// another case than "tag", which sipgo does not recognise.
func otherCaseTag(params interface{ Keys() []string }) bool {
	for _, k := range params.Keys() {
		if k != "tag" && strings.EqualFold(k, "tag") {
			return true
		}
	}
	return false
}
