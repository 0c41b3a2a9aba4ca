package httpproxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tt := range []struct {
		name, in       string
		method, target string
		cl             int64
		chunked        bool
		minor          int
		fields         []string // "Name: value" as parsed
		leanable       bool
	}{
		{"simple", "GET /x?y HTTP/1.1\r\nHost: a.test\r\n\r\n", "GET", "/x?y", -1, false, 1, []string{"Host: a.test"}, true},
		{"trimmed values", "POST / HTTP/1.1\r\nHost:a.test \r\nContent-Length:\t5\t\r\nX-E:\r\n\r\n", "POST", "/", 5, false, 1,
			[]string{"Host: a.test", "Content-Length: 5", "X-E: "}, true},
		{"identical duplicate CL", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\ncontent-length: 003\r\n\r\n", "PUT", "/", 3, false, 1,
			[]string{"Host: a", "Content-Length: 3", "content-length: 003"}, true},
		{"chunked any case", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n", "POST", "/", -1, true, 1,
			[]string{"Host: a", "Transfer-Encoding: ChUnKeD"}, true},
		{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", "GET", "/", -1, false, 1, []string{"Host: a", "X: caf\xc3\xa9"}, true},
		{"options star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "OPTIONS", "*", -1, false, 1, []string{"Host: a"}, true},
		{"HTTP/1.0 goes to net/http", "GET / HTTP/1.0\r\n\r\n", "GET", "/", -1, false, 0, nil, false},
		{"upgrade goes to net/http", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", "GET", "/", -1, false, 1,
			[]string{"Host: a", "Upgrade: websocket"}, false},
		{"absolute form goes to net/http", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", "GET", "http://a/", -1, false, 1, []string{"Host: a"}, false},
		{"expect other", "GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n", "GET", "/", -1, false, 1, []string{"Host: a", "Expect: x"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			if end := headEnd(b, 0); end != len(b) {
				t.Fatalf("headEnd = %d, want %d", end, len(b))
			}
			var h head
			if err := parseRequest(b, &h); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, f := range h.fields {
				fields = append(fields, string(f.name.of(b))+": "+string(f.value.of(b)))
			}
			if string(h.method.of(b)) != tt.method || string(h.target.of(b)) != tt.target || h.contentLength != tt.cl ||
				h.chunked != tt.chunked || h.minor != tt.minor || !slices.Equal(fields, tt.fields) || leanable(b, &h) != tt.leanable {
				t.Fatalf("parsed %q %q cl=%d chunked=%v minor=%d fields=%q leanable=%v", h.method.of(b), h.target.of(b),
					h.contentLength, h.chunked, h.minor, fields, leanable(b, &h))
			}
		})
	}
}

func TestHeadEnd(t *testing.T) {
	in := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\nNEXT")
	// Fed one byte at a time, the end is found exactly once it arrives.
	from := 0
	for n := 1; n <= len(in); n++ {
		end := headEnd(in[:n], from)
		want := -1
		if n >= len(in)-len("NEXT") {
			want = len(in) - len("NEXT")
		}
		if end != want {
			t.Fatalf("headEnd(%q, %d) = %d, want %d", in[:n], from, end, want)
		}
		if end >= 0 {
			break
		}
		from = n
	}
	for _, s := range []string{"GET / HTTP/1.1\n\n", "GET / HTTP/1.1\r\nA: b\n\r\n"} {
		if headEnd([]byte(s), 0) != len(s) {
			t.Errorf("headEnd(%q) does not find the bare-LF end (the parser must see it to refuse it)", s)
		}
	}
}

func TestParseResponse(t *testing.T) {
	for _, tt := range []struct {
		in      string
		status  int
		reason  string
		cl      int64
		chunked bool
		close   bool
		err     bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200, "OK", 2, false, false, false},
		{"HTTP/1.1 204\r\n\r\n", 204, "", -1, false, false, false},
		{"HTTP/1.0 200 Fine thanks\nConnection: close\n\n", 200, "Fine thanks", -1, false, true, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", 200, "OK", 9, true, false, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 0, "", 0, false, false, true},
		{"HTTP/2 200 OK\r\n\r\n", 0, "", 0, false, false, true},
		{"HTTP/1.1 20 OK\r\n\r\n", 0, "", 0, false, false, true},
		{"HTTP/1.1 200 OK\r\n folded\r\n\r\n", 0, "", 0, false, false, true},
	} {
		b := []byte(tt.in)
		var h head
		err := parseResponse(b, &h)
		if tt.err {
			if err == nil {
				t.Errorf("%q: no error", tt.in)
			}
			continue
		}
		if err != nil || h.status != tt.status || string(h.reason.of(b)) != tt.reason || h.contentLength != tt.cl ||
			h.chunked != tt.chunked || h.connClose != tt.close {
			t.Errorf("%q: %v status=%d reason=%q cl=%d chunked=%v close=%v", tt.in, err, h.status, h.reason.of(b),
				h.contentLength, h.chunked, h.connClose)
		}
	}
}

// TestParseRequestAllocs checks that parsing a request allocates nothing
// once the field slice has grown.
func TestParseRequestAllocs(t *testing.T) {
	b := []byte("GET /app/provision/x.cfg HTTP/1.1\r\nHost: prov.example.com\r\nUser-Agent: phone/1.0\r\n" +
		"Accept: */*\r\nConnection: keep-alive, X-A\r\nAuthorization: Basic YTpi\r\nContent-Length: 0\r\n\r\n")
	var h head
	if n := testing.AllocsPerRun(100, func() {
		if headEnd(b, 0) != len(b) || parseRequest(b, &h) != nil {
			t.Fatal("parse failed")
		}
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}

// decodeChunked runs the chunk parser over in, fed in pieces of at most
// step bytes, with output limit limit. It returns the normalized output,
// the data, and the bytes consumed.
func decodeChunked(in []byte, step, limit int) (out, data []byte, consumed int, err error) {
	var p chunkParser
	p.reset(4096)
	var buf []byte
	for consumed < len(in) && !p.done() {
		end := min(consumed+step, len(in))
		n, o, _, err := p.feed(in[consumed:end], buf[:0], limit)
		out = append(out, o...)
		buf = o
		consumed += n
		if err != nil {
			return nil, nil, consumed, err
		}
	}
	if !p.done() {
		return out, nil, consumed, io.ErrUnexpectedEOF
	}
	data, err = io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(out)))
	return out, data, consumed, err
}

func TestChunkParser(t *testing.T) {
	for _, tt := range []struct {
		in, out string
		err     error
	}{
		{"5\r\nhello\r\n0\r\n\r\nNEXT", "5\r\nhello\r\n0\r\n\r\n", nil},
		{"A;x=1;y=\"z\"\r\n0123456789\r\n00; last\r\nX-T: 1\r\nY: 2\r\n\r\n", "a\r\n0123456789\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n", nil},
		{"5\nhello\r\n0\r\n\r\n", "", errChunkLine},
		{"5 ;x\r\nhello\r\n0\r\n\r\n", "", errChunkLine},
		{"5;x\rhello\r\n0\r\n\r\n", "", errBareCR},
		{strings.Repeat("1;"+strings.Repeat("e", 1000)+"\r\nx\r\n", 20), "", errChunkOverhead},
		{"5\r\nhello\n0\r\n\r\n", "", errChunkEnd},
		{"5 5\r\nhello\r\n", "", errChunkLine},
		{";x\r\n", "", errChunkLine},
		{"-1\r\n", "", errChunkLine},
		{"1000000000000000\r\n", "", errChunkSize},
		{"0\r\n folded: x\r\n\r\n", "", errObsFold},
		{"0\r\nX: 1\n\r\n", "", errBareLF},
		{"5;a\x00b\r\nhello\r\n", "", errChunkLine},
	} {
		for _, step := range []int{1, 3, 1 << 20} {
			out, _, consumed, err := decodeChunked([]byte(tt.in), step, 64)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("%q step %d: err %v, want %v", tt.in, step, err, tt.err)
				}
				continue
			}
			want := len(tt.in) - len("NEXT")
			if !strings.HasSuffix(tt.in, "NEXT") {
				want = len(tt.in)
			}
			if err != nil || string(out) != tt.out || consumed != want {
				t.Errorf("%q step %d: %q %v, consumed %d of %d", tt.in, step, out, err, consumed, want)
			}
		}
	}
}

// FuzzChunked checks the chunk parser against net/http's chunked reader:
// whatever it accepts, net/http decodes to the same data; its output is a
// fixed point; feeding it in pieces changes nothing.
func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"a;ext=v\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n",
		"1\r\nx\r\n1;a\r\ny\r\n0\r\n\r\n",
		"0\r\n\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"ffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		out, data, consumed, err := decodeChunked(in, max(int(step), 1), 48)
		whole, wdata, wconsumed, werr := decodeChunked(in, len(in)+1, 1<<20)
		if (err == nil) != (werr == nil) || err == nil && (!bytes.Equal(out, whole) || consumed != wconsumed || !bytes.Equal(data, wdata)) {
			t.Fatalf("pieces: %q %v; whole: %q %v", out, err, whole, werr)
		}
		if err != nil {
			return
		}
		theirs, terr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in[:consumed])))
		if terr != nil || !bytes.Equal(theirs, data) {
			t.Fatalf("we decode %q to %q, net/http to %q (%v)", in[:consumed], data, theirs, terr)
		}
		again, _, _, err := decodeChunked(out, len(out)+1, 1<<20)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("output %q not a fixed point: %q %v", out, again, err)
		}
	})
}

// FuzzParseRequest checks the request parser against net/http's
// http.ReadRequest: whatever the lean path would serve, net/http accepts
// too, with the same method, target, Host, fields and body framing.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
		"POST /p?q=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5;e\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, X-A\r\nX-A: 1\r\nPragma: no-cache\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%41 HTTP/1.1\r\nHost: [::1]:80\r\nX: a\tb\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		end := headEnd(in, 0)
		if end < 0 {
			return
		}
		hb := in[:end]
		var h head
		if err := parseRequest(hb, &h); err != nil {
			var he *h1Error
			if !errors.As(err, &he) || he.status != 400 && he.status != 431 {
				t.Fatalf("error %v is no h1Error", err)
			}
			return
		}
		if !leanable(hb, &h) {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("we accept %q, net/http does not: %v", hb, err)
		}
		if req.Method != string(h.method.of(hb)) || req.RequestURI != string(h.target.of(hb)) ||
			req.Host != string(h.fields[h.host].value.of(hb)) {
			t.Fatalf("we read %q %q host %q; net/http %q %q %q", h.method.of(hb), h.target.of(hb),
				h.fields[h.host].value.of(hb), req.Method, req.RequestURI, req.Host)
		}
		ours := http.Header{}
		for _, fl := range h.fields {
			ours.Add(textproto.CanonicalMIMEHeaderKey(string(fl.name.of(hb))), string(fl.value.of(hb)))
		}
		for _, k := range []string{"Host", "Content-Length", "Transfer-Encoding", "Trailer"} {
			delete(ours, k)
			delete(req.Header, k)
		}
		if _, ok := ours["Cache-Control"]; !ok {
			delete(req.Header, "Cache-Control") // net/http derives it from Pragma
		}
		for k, v := range req.Header {
			if !slices.Equal(ours[k], v) {
				t.Fatalf("field %s: we read %q, net/http %q", k, ours[k], v)
			}
		}
		if len(ours) != len(req.Header) {
			t.Fatalf("fields: we read %v, net/http %v", ours, req.Header)
		}
		switch {
		case h.chunked:
			if !slices.Equal(req.TransferEncoding, []string{"chunked"}) || req.ContentLength != -1 {
				t.Fatalf("we read chunked, net/http %v %d", req.TransferEncoding, req.ContentLength)
			}
			_, data, _, err := decodeChunked(in[end:], len(in), 1<<20)
			if err == nil {
				theirs, terr := io.ReadAll(req.Body)
				if terr != nil || !bytes.Equal(theirs, data) {
					t.Fatalf("body: we read %q, net/http %q (%v)", data, theirs, terr)
				}
			}
		case h.contentLength >= 0:
			if req.ContentLength != h.contentLength || len(req.TransferEncoding) != 0 {
				t.Fatalf("we read Content-Length %d, net/http %d %v", h.contentLength, req.ContentLength, req.TransferEncoding)
			}
		default:
			if req.ContentLength != 0 || len(req.TransferEncoding) != 0 {
				t.Fatalf("we read no body, net/http %d %v", req.ContentLength, req.TransferEncoding)
			}
		}
	})
}
