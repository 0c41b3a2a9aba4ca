package httpproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// rawOrigin is a backend whose every connection is served by fn; it
// counts the connections it accepted.
type rawOrigin struct {
	addr    string
	accepts atomic.Int32
}

func newRawOrigin(t testing.TB, fn func(c net.Conn, br *bufio.Reader)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.accepts.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				fn(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

// readReq reads one request head and its body (Content-Length or chunked)
// with net/http's parser.
func readReq(br *bufio.Reader) (*http.Request, string, error) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(r.Body)
	return r, string(b), err
}

// okOrigin answers every request with "ok" and no Date header (net/http
// would add one: its absence shows the lean path relayed the answer).
func okOrigin(t testing.TB) *rawOrigin {
	return newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r, body, err := readReq(br)
			if err != nil {
				return
			}
			msg := r.Method + " " + r.RequestURI + " " + body
			if r.Method == http.MethodHead {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(msg))
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nX-Origin: raw\r\nContent-Length: %d\r\n\r\n%s", len(msg), msg)
		}
	})
}

func leanEnv(t *testing.T, addr string, o Options, so ServerOptions) *proxyEnv {
	t.Helper()
	o.Services = append(o.Services, Service{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: addr}})
	return startProxy(t, modePlain, o, so)
}

// client is a raw keep-alive client connection.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (cl *client) send(s string) {
	cl.t.Helper()
	if _, err := io.WriteString(cl.c, s); err != nil {
		cl.t.Fatal(err)
	}
}

// read reads one response to a request with method.
func (cl *client) read(method string) (*http.Response, string) {
	cl.t.Helper()
	resp, err := http.ReadResponse(cl.br, &http.Request{Method: method})
	if err != nil {
		cl.t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		cl.t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection (EOF or reset)
// before the deadline, with nothing more to read.
func (cl *client) closed(within time.Duration) bool {
	cl.t.Helper()
	_ = cl.c.SetReadDeadline(time.Now().Add(within))
	var b [1]byte
	n, err := cl.br.Read(b[:])
	if n > 0 {
		cl.t.Fatalf("unexpected byte %q", b[0])
	}
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

const hostHdr = "Host: prov.example.com\r\n"

func TestLeanPipelined(t *testing.T) {
	leakCheck(t)
	o := okOrigin(t)
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	cl.send("GET /1 HTTP/1.1\r\n" + hostHdr + "\r\n" +
		"POST /2 HTTP/1.1\r\n" + hostHdr + "Content-Length: 5\r\n\r\nhello" +
		"HEAD /3 HTTP/1.1\r\n" + hostHdr + "\r\n" +
		"GET /4 HTTP/1.1\r\n" + hostHdr + "\r\n")
	for i, want := range []struct{ method, body string }{
		{"GET", "GET /1 "}, {"POST", "POST /2 hello"}, {"HEAD", ""}, {"GET", "GET /4 "},
	} {
		resp, body := cl.read(want.method)
		if resp.StatusCode != 200 || body != want.body || resp.Header.Get("Date") != "" || resp.Header.Get("X-Origin") != "raw" && want.method != "HEAD" {
			t.Fatalf("response %d: %d %q %v, want %q from the lean path", i, resp.StatusCode, body, resp.Header, want.body)
		}
		if want.method == "HEAD" && resp.ContentLength != int64(len("HEAD /3 ")) {
			t.Fatalf("HEAD Content-Length %d", resp.ContentLength)
		}
	}
	if n := o.accepts.Load(); n != 1 {
		t.Fatalf("backend connections %d, want 1 (reused)", n)
	}
}

func TestLeanChunked(t *testing.T) {
	leakCheck(t)
	// The origin echoes the request body (which it reads with net/http's
	// chunked decoder, trailers included) as a chunked response with
	// extensions and a trailer.
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r, body, err := readReq(br)
			if err != nil {
				return
			}
			te := strings.Join(r.TransferEncoding, ",")
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"%x;ext=1\r\n%s\r\n%x\r\n|%s|%s\r\n0\r\nX-Sum: %d\r\n\r\n",
				len(body), body, len(te)+len(r.Trailer.Get("X-T"))+2, te, r.Trailer.Get("X-T"), len(body))
		}
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	for range 2 {
		cl.send("POST /c HTTP/1.1\r\n" + hostHdr + "Transfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n" +
			"5;name=v\r\nhello\r\n1A\r\n" + strings.Repeat("x", 26) + "\r\n0\r\nX-T: t1\r\n\r\n")
		resp, body := cl.read("POST")
		want := "hello" + strings.Repeat("x", 26) + "|chunked|t1"
		if resp.StatusCode != 200 || body != want || resp.Trailer.Get("X-Sum") != "31" {
			t.Fatalf("got %d %q trailer %v, want %q", resp.StatusCode, body, resp.Trailer, want)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Fatalf("Transfer-Encoding %v", resp.TransferEncoding)
		}
	}
	if n := o.accepts.Load(); n != 1 {
		t.Fatalf("backend connections %d, want 1", n)
	}
	// Bad framing in the body: the head has gone to the backend already,
	// but the body is cut where the framing breaks, the client gets 400.
	for name, body := range map[string]string{
		"data not followed by CRLF": "5\r\nhelloXX",
		"chunk size overflow":       "fffffffffffffffff\r\n",
		"bare LF after size":        "5\nhello\r\n0\r\n\r\n",
		"space in size":             "5 5\r\nhello\r\n0\r\n\r\n",
		"bad trailer":               "0\r\nX y: 1\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			n := len(env.events.Events())
			cl := dial(t, env.addr)
			cl.send("POST /c HTTP/1.1\r\n" + hostHdr + "Transfer-Encoding: chunked\r\n\r\n" + body)
			resp, _ := cl.read("POST")
			if resp.StatusCode != 400 || !cl.closed(2*time.Second) {
				t.Fatalf("status %d, want 400 and close", resp.StatusCode)
			}
			if evs := findEvents(eventsSince(env.events, n), event.RejectedByGateway, event.ReasonBadRequest); len(evs) != 1 || evs[0].Service != "prov" {
				t.Fatalf("events %+v", eventsSince(env.events, n))
			}
		})
	}
}

func TestLeanExpectContinue(t *testing.T) {
	leakCheck(t)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch r.URL.Path {
			case "/deny": // answer at once, without reading the body
				io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
				return
			case "/silent": // never send 100: the gateway must go ahead after a while
			default:
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			}
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
		}
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	for _, tt := range []struct {
		path   string
		status int
		cont   bool
	}{{"/ok", 200, true}, {"/silent", 200, true}, {"/deny", 401, false}} {
		t.Run(tt.path, func(t *testing.T) {
			cl := dial(t, env.addr)
			cl.send("PUT " + tt.path + " HTTP/1.1\r\n" + hostHdr + "Content-Length: 4\r\nExpect: 100-continue\r\n\r\n")
			resp, err := http.ReadResponse(cl.br, &http.Request{Method: "PUT"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.cont {
				if resp.StatusCode != 100 {
					t.Fatalf("status %d, want 100 first", resp.StatusCode)
				}
				cl.send("data")
				var body string
				resp, body = cl.read("PUT")
				if resp.StatusCode != tt.status || body != "data" {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != tt.status || !resp.Close {
				t.Fatalf("got %d close=%v, want %d and Connection: close", resp.StatusCode, resp.Close, tt.status)
			}
		})
	}
}

func TestLeanNoBodyStatuses(t *testing.T) {
	leakCheck(t)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r, _, err := readReq(br)
			if err != nil {
				return
			}
			// Wrong framing on purpose: a 204/304/HEAD answer has no body
			// whatever Content-Length says.
			code, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Length: 10\r\nETag: \"x\"\r\n\r\n", code, http.StatusText(code))
		}
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	for _, tt := range []struct {
		method string
		code   int
	}{{"GET", 204}, {"GET", 304}, {"HEAD", 200}, {"GET", 304}} {
		cl.send(tt.method + " /" + strconv.Itoa(tt.code) + " HTTP/1.1\r\n" + hostHdr + "\r\n")
		resp, body := cl.read(tt.method)
		if resp.StatusCode != tt.code || body != "" || resp.Header.Get("Etag") != `"x"` {
			t.Fatalf("%s %d: got %d %q %v", tt.method, tt.code, resp.StatusCode, body, resp.Header)
		}
	}
	if n := o.accepts.Load(); n != 1 {
		t.Fatalf("backend connections %d, want 1", n)
	}
}

func TestLeanCloseDelimited(t *testing.T) {
	leakCheck(t)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	cl.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
	resp, body := cl.read("GET")
	if resp.StatusCode != 200 || body != "until the end" || !resp.Close {
		t.Fatalf("got %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if !cl.closed(2 * time.Second) {
		t.Fatal("client connection not closed after a close-delimited body")
	}
}

func TestLeanBackendConnectionClose(t *testing.T) {
	leakCheck(t)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	for i := range 3 {
		cl.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
		resp, body := cl.read("GET")
		if resp.StatusCode != 200 || body != "ok" || resp.Close {
			t.Fatalf("request %d: %d %q close=%v (the client connection stays open)", i, resp.StatusCode, body, resp.Close)
		}
	}
	if n := o.accepts.Load(); n != 3 {
		t.Fatalf("backend connections %d, want 3 (none reused)", n)
	}
	if evs := env.events.Events(); len(evs) != 0 {
		t.Fatalf("events %+v", evs)
	}
}

func TestLeanBackendDiesMidResponse(t *testing.T) {
	leakCheck(t)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		r, _, err := readReq(br)
		if err != nil {
			return
		}
		if r.URL.Path == "/chunked" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..")
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	for _, path := range []string{"/length", "/chunked"} {
		t.Run(path, func(t *testing.T) {
			cl := dial(t, env.addr)
			cl.send("GET " + path + " HTTP/1.1\r\n" + hostHdr + "\r\n")
			resp, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("%v %v", resp, err)
			}
			_ = cl.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(resp.Body)
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("body %q, err %v: want a cut-short body, not a hang", b, err)
			}
		})
	}
	if evs := env.events.Events(); len(evs) != 0 {
		t.Fatalf("events %+v (the backend answered: not unreachable)", evs)
	}
}

func TestLeanRetryOnReusedConn(t *testing.T) {
	leakCheck(t)
	// Every backend connection serves one request, then closes without
	// saying so: the next request on it fails before any answer.
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	for i := range 4 {
		cl.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
		resp, body := cl.read("GET")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// A POST with a body is not retried, but the connection is checked
	// before it is used.
	cl.send("POST / HTTP/1.1\r\n" + hostHdr + "Content-Length: 1\r\n\r\nx")
	if resp, body := cl.read("POST"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if evs := env.events.Events(); len(evs) != 0 {
		t.Fatalf("events %+v", evs)
	}
}

func TestLeanBackendErrors(t *testing.T) {
	leakCheck(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	garbage := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		if _, _, err := readReq(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n")
	})
	silent := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		_, _, _ = readReq(br)
		_, _ = br.ReadByte() // until the gateway gives up
	})
	env := startProxy(t, modePlain, Options{ResponseHeaderTimeout: 200 * time.Millisecond, Services: []Service{
		{Name: "dead", Hosts: []string{"dead.test"}, Backend: Backend{Address: dead}},
		{Name: "garbage", Hosts: []string{"garbage.test"}, Backend: Backend{Address: garbage.addr}},
		{Name: "silent", Hosts: []string{"silent.test"}, Backend: Backend{Address: silent.addr}},
	}}, ServerOptions{})
	for _, tt := range []struct {
		host   string
		status int
		detail string
	}{
		{"dead.test", 502, "connection refused"},
		{"garbage.test", 502, "malformed HTTP response"},
		{"silent.test", 504, "timeout"},
	} {
		t.Run(tt.host, func(t *testing.T) {
			n := len(env.events.Events())
			cl := dial(t, env.addr)
			cl.send("GET / HTTP/1.1\r\nHost: " + tt.host + "\r\n\r\n")
			resp, _ := cl.read("GET")
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			evs := eventsSince(env.events, n)
			if len(evs) != 1 || evs[0].Kind != event.BackendUnreachable || evs[0].Reason != event.ReasonDial ||
				!strings.Contains(evs[0].Detail, tt.detail) || evs[0].Service == "" {
				t.Fatalf("events %+v, want one backend_unreachable ~%q", evs, tt.detail)
			}
			// The client connection stays usable.
			cl.send("GET / HTTP/1.1\r\nHost: " + tt.host + "\r\n\r\n")
			if resp, _ := cl.read("GET"); resp.StatusCode != tt.status {
				t.Fatalf("second request: %d", resp.StatusCode)
			}
		})
	}
}

// TestLeanRefusals sends requests that two HTTP implementations could
// read differently (request smuggling) or that are malformed: each is
// answered 400 (431 for an oversized head), reported, and never reaches
// the backend.
func TestLeanRefusals(t *testing.T) {
	leakCheck(t)
	o := okOrigin(t)
	env := leanEnv(t, o.addr, Options{}, ServerOptions{MaxHeaderBytes: 1024})
	const line = "POST / HTTP/1.1\r\n" + hostHdr
	for _, tt := range []struct {
		name, req string
		status    int
		detail    string
	}{
		{"CL and TE", line + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "both Content-Length and Transfer-Encoding"},
		{"TE and CL", line + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "both"},
		{"duplicate CL", line + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, "conflicting Content-Length"},
		{"CL list", line + "Content-Length: 5, 5\r\n\r\nhello", 400, "bad Content-Length"},
		{"CL sign", line + "Content-Length: +5\r\n\r\nhello", 400, "bad Content-Length"},
		{"TE identity", line + "Transfer-Encoding: identity\r\n\r\n", 400, "Transfer-Encoding"},
		{"TE gzip chunked", line + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"},
		{"TE chunked twice", line + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"},
		{"TE chunked gzip", line + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"},
		{"TE with junk", line + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"},
		{"obs-fold", line + "X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n", 400, "obsolete line folding"},
		{"space before colon", line + "Transfer-Encoding : chunked\r\n\r\n", 400, "whitespace before colon"},
		{"tab in name", line + "Transfer-Encoding\t: chunked\r\n\r\n", 400, "whitespace before colon"},
		{"bare LF", "GET / HTTP/1.1\n" + "Host: prov.example.com\n\n", 400, "bare LF"},
		{"bare LF in fields", "GET / HTTP/1.1\r\nHost: prov.example.com\nX: y\r\n\r\n", 400, "bare LF"},
		{"bare CR", "GET / HTTP/1.1\r\nHost: prov.example.com\rX: y\r\n\r\n", 400, "bare CR"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: prov.example.com\r\nX: a\x00b\r\n\r\n", 400, "invalid header field value"},
		{"bad name", "GET / HTTP/1.1\r\nHost: prov.example.com\r\nX(y): 1\r\n\r\n", 400, "invalid header field name"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: prov.example.com\r\nHost: other.test\r\n\r\n", 400, "too many Host headers"},
		{"bad Host", "GET / HTTP/1.1\r\nHost: prov.example.com/x\r\n\r\n", 400, "malformed Host"},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, "missing required Host header"},
		{"tab in request line", "GET\t/ HTTP/1.1\r\n" + hostHdr + "\r\n", 400, "malformed request line"},
		{"two spaces", "GET  / HTTP/1.1\r\n" + hostHdr + "\r\n", 400, "malformed request line"},
		{"bad escape", "GET /a%zz HTTP/1.1\r\n" + hostHdr + "\r\n", 400, "malformed request target"},
		{"oversized head", "GET / HTTP/1.1\r\n" + hostHdr + "X-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431, "431 Request Header Fields Too Large"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := len(env.events.Events())
			before := o.accepts.Load()
			resp := rawRequest(t, env.addr, tt.req)
			if !strings.HasPrefix(resp, "HTTP/1.1 "+strconv.Itoa(tt.status)+" ") {
				t.Fatalf("response %q, want %d", resp, tt.status)
			}
			evs := eventsSince(env.events, n)
			if len(evs) != 1 || evs[0].Kind != event.RejectedByGateway || evs[0].Reason != event.ReasonBadRequest ||
				!strings.Contains(evs[0].Detail, tt.detail) || evs[0].Source != netip.MustParseAddr("127.0.0.1") {
				t.Fatalf("events %+v, want one bad_request ~%q", evs, tt.detail)
			}
			if o.accepts.Load() != before {
				t.Fatal("the backend was reached")
			}
		})
	}
}

func TestLeanTimeouts(t *testing.T) {
	leakCheck(t)
	o := okOrigin(t)
	env := leanEnv(t, o.addr, Options{}, ServerOptions{ReadHeaderTimeout: 200 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	t.Run("slow head", func(t *testing.T) {
		cl := dial(t, env.addr)
		start := time.Now()
		cl.send("GET / HTTP/1.1\r\nHost: prov")
		if !cl.closed(5 * time.Second) {
			t.Fatal("connection still open")
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("closed after %v, before the header timeout", d)
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		cl := dial(t, env.addr)
		cl.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
		if resp, _ := cl.read("GET"); resp.StatusCode != 200 {
			t.Fatal(resp.StatusCode)
		}
		start := time.Now()
		if !cl.closed(5 * time.Second) {
			t.Fatal("idle connection still open")
		}
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("closed after %v, before the idle timeout", d)
		}
	})
}

// TestLeanHandoff checks that a connection served by the lean path moves to
// net/http at a request boundary when a request needs it: a WebSocket
// upgrade, HTTP/1.0, HTTP/2 with prior knowledge, an absolute-form target,
// and an empty Swappable.
func TestLeanHandoff(t *testing.T) {
	leakCheck(t)
	prov := newBackend(t, "prov", nil)
	for _, mode := range []connMode{modePlain, modeStater} {
		env := startProxy(t, mode, Options{Services: []Service{
			{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
		}}, ServerOptions{})
		dialMode := func(t *testing.T) *client {
			if mode == modePlain {
				return dial(t, env.addr)
			}
			c, err := tls.Dial("tcp", env.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			return &client{t: t, c: c, br: bufio.NewReader(c)}
		}
		first := func(t *testing.T, cl *client) {
			cl.send("GET /first HTTP/1.1\r\n" + hostHdr + "\r\n")
			resp, body := cl.read("GET")
			if resp.StatusCode != 200 || decodeEcho(t, body).URI != "/first" {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			if got := decodeEcho(t, body).Header.Get("X-Forwarded-Proto"); got != map[connMode]string{modePlain: "http", modeStater: "https"}[mode] {
				t.Fatalf("X-Forwarded-Proto %q", got)
			}
		}
		t.Run(fmt.Sprint("websocket ", mode), func(t *testing.T) {
			cl := dialMode(t)
			first(t, cl)
			cl.send("GET /ws?close HTTP/1.1\r\n" + hostHdr + "Connection: Upgrade\r\nUpgrade: websocket\r\n" +
				"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
			resp, err := http.ReadResponse(cl.br, &http.Request{Method: "GET"})
			if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
		})
		t.Run(fmt.Sprint("HTTP/1.0 ", mode), func(t *testing.T) {
			cl := dialMode(t)
			first(t, cl)
			cl.send("GET /old HTTP/1.0\r\n" + hostHdr + "\r\n")
			resp, body := cl.read("GET")
			if resp.StatusCode != 200 || resp.Proto != "HTTP/1.0" || decodeEcho(t, body).URI != "/old" {
				t.Fatalf("HTTP/1.0: %d %s %q", resp.StatusCode, resp.Proto, body)
			}
		})
		t.Run(fmt.Sprint("absolute form ", mode), func(t *testing.T) {
			cl := dialMode(t)
			first(t, cl)
			n := len(env.events.Events())
			cl.send("GET http://prov.example.com/x HTTP/1.1\r\n" + hostHdr + "\r\n")
			if resp, _ := cl.read("GET"); resp.StatusCode != 400 {
				t.Fatalf("absolute form: %d", resp.StatusCode)
			}
			if evs := findEvents(eventsSince(env.events, n), event.RejectedByGateway, event.ReasonBadRequest); len(evs) != 1 || evs[0].Service != "prov" {
				t.Fatalf("events %+v", eventsSince(env.events, n))
			}
		})
	}
	t.Run("h2c prior knowledge", func(t *testing.T) {
		env := startProxy(t, modePlain, Options{Services: []Service{
			{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: backendAddr(prov)}},
		}}, ServerOptions{})
		r := curl(t, "--http2-prior-knowledge", "-H", "Host: prov.example.com", "http://"+env.addr+"/h2c")
		if r.status != 200 || r.version != "2" {
			t.Fatalf("got %d HTTP/%s", r.status, r.version)
		}
	})
	t.Run("empty Swappable", func(t *testing.T) {
		env := startProxy(t, modePlain, Options{}, ServerOptions{})
		env.sw.Swap(nil)
		cl := dial(t, env.addr)
		cl.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
		if resp, _ := cl.read("GET"); resp.StatusCode != 503 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestLeanForwardingHeaders(t *testing.T) {
	leakCheck(t)
	var mu sync.Mutex
	var got []string // raw header lines of the last request
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			var lines []string
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
				lines = append(lines, strings.TrimRight(l, "\r\n"))
			}
			mu.Lock()
			got = lines
			mu.Unlock()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: X-Hop, Keep-Alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-End: 2\r\nContent-Length: 0\r\n\r\n")
		}
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	cl := dial(t, env.addr)
	cl.send("GET /p?q HTTP/1.1\r\nHost: prov.example.com\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n" +
		"Keep-Alive: 1\r\nProxy-Connection: x\r\nTE: trailers, deflate\r\nProxy-Authorization: Basic x\r\n" +
		"X-Forwarded-For: 203.0.113.7\r\nx-forwarded-proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.1.1.1\r\n" +
		"X-Forwarded-Port: 1\r\nAccept: */*\r\n\r\n")
	resp, _ := cl.read("GET")
	if resp.Header.Get("X-Hop") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-End") != "2" {
		t.Fatalf("response hop-by-hop fields not dropped: %v", resp.Header)
	}
	mu.Lock()
	lines := got
	mu.Unlock()
	want := []string{
		"GET /p?q HTTP/1.1",
		"Host: prov.example.com",
		"Accept: */*",
		"X-Forwarded-For: 127.0.0.1",
		"X-Forwarded-Proto: http",
		"X-Forwarded-Host: prov.example.com",
		"Forwarded: for=127.0.0.1;proto=http;host=prov.example.com",
		"Te: trailers",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("backend got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestLeanShutdown(t *testing.T) {
	leakCheck(t)
	release := make(chan struct{})
	reached := make(chan struct{}, 1)
	o := newRawOrigin(t, func(c net.Conn, br *bufio.Reader) {
		for {
			r, _, err := readReq(br)
			if err != nil {
				return
			}
			if r.URL.Path == "/slow" {
				reached <- struct{}{}
				select {
				case <-release:
				case <-time.After(10 * time.Second):
				}
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	idle := dial(t, env.addr)
	idle.send("GET / HTTP/1.1\r\n" + hostHdr + "\r\n")
	idle.read("GET")
	busy := dial(t, env.addr)
	busy.send("GET /slow HTTP/1.1\r\n" + hostHdr + "\r\n")
	select {
	case <-reached:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request never reached the backend")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- env.srv.Shutdown(ctx)
	}()
	if !idle.closed(2 * time.Second) {
		t.Fatal("idle connection not closed by Shutdown")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "ok" || !resp.Close {
		t.Fatalf("in-flight request: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestLeanAccessLog(t *testing.T) {
	leakCheck(t)
	o := okOrigin(t)
	var mu sync.Mutex
	var buf strings.Builder
	log := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}), nil))
	env := leanEnv(t, o.addr, Options{AccessLog: true, Log: log}, ServerOptions{})
	cl := dial(t, env.addr)
	cl.send("GET /a/b?secret=1 HTTP/1.1\r\n" + hostHdr + "\r\nGET / HTTP/1.1\r\nHost: nope.test\r\n\r\n")
	cl.read("GET")
	cl.read("GET")
	// The access line is written after the response: wait for it.
	var lines []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
		mu.Unlock()
		if len(lines) >= 2 || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != 2 {
		t.Fatalf("log: %q", lines)
	}
	var l1, l2 map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &l1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &l2); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"level": "INFO", "msg": "http request", "listener": "web", "src": "127.0.0.1", "host": "prov.example.com",
		"method": "GET", "path": "/a/b", "proto": "HTTP/1.1", "status": float64(200),
		"bytes": float64(len("GET /a/b?secret=1 ")), "service": "prov", "component": "httpproxy",
	} {
		if l1[k] != want {
			t.Errorf("%s = %v, want %v in %s", k, l1[k], want, lines[0])
		}
	}
	if _, ok := l1["duration"]; !ok {
		t.Errorf("no duration in %s", lines[0])
	}
	if l2["status"] != float64(404) || l2["service"] != "" || l2["host"] != "nope.test" || l2["bytes"] != float64(len("404 page not found\n")) {
		t.Errorf("unknown host line %s", lines[1])
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestServeConnHere: ServeConnHere serves a lean connection on the calling
// goroutine, request after request, and returns once the client closes it.
func TestServeConnHere(t *testing.T) {
	leakCheck(t)
	o := okOrigin(t)
	env := leanEnv(t, o.addr, Options{}, ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	returned := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			returned <- err
			return
		}
		returned <- env.srv.ServeConnHere(&replayConn{c})
	}()
	cl := dial(t, ln.Addr().String())
	for i := range 2 {
		cl.send("GET /x HTTP/1.1\r\n" + hostHdr + "\r\n")
		if resp, _ := cl.read("GET"); resp.StatusCode != 200 || resp.Header.Get("X-Origin") != "raw" {
			t.Fatalf("request %d: %d %v, want 200 from the lean path", i, resp.StatusCode, resp.Header)
		}
		select {
		case err := <-returned:
			t.Fatalf("ServeConnHere returned %v with the connection open", err)
		default:
		}
	}
	cl.c.Close()
	select {
	case err := <-returned:
		if err != nil {
			t.Errorf("ServeConnHere = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeConnHere did not return after the client closed")
	}
}
