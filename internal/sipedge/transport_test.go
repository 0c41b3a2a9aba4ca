package sipedge

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/siptest"
	"github.com/pbxgate/pbxgate/internal/udprelay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakePBX answers REGISTER with 200 and records every request it gets.
type fakePBX struct {
	mu   sync.Mutex
	got  []string // requests as received
	conn net.Conn // the latest stream connection
}

func (pbx *fakePBX) record(b []byte) {
	pbx.mu.Lock()
	pbx.got = append(pbx.got, string(b))
	pbx.mu.Unlock()
}

func (pbx *fakePBX) requests() []string {
	pbx.mu.Lock()
	defer pbx.mu.Unlock()
	return append([]string(nil), pbx.got...)
}

// answer returns the PBX's answer to one request, or nil.
func (pbx *fakePBX) answer(b []byte) []byte {
	var m sip.Message
	if sip.Parse(b, &m) != nil || !m.Request {
		return nil
	}
	pbx.record(b)
	if string(m.Method) != "REGISTER" && string(m.Method) != "OPTIONS" {
		return nil
	}
	out, err := sip.AppendResponse(nil, b, &m, 200, "", []byte("pbxtag"))
	if err != nil {
		return nil
	}
	return out
}

// serveTCP answers on stream connections accepted by ln; the first bytes
// may be a PROXY v2 header, recorded as is.
func (pbx *fakePBX) serveTCP(t *testing.T, ln net.Listener) {
	t.Helper()
	t.Cleanup(siptest.Serve(ln, func(c net.Conn) {
		pbx.mu.Lock()
		pbx.conn = c
		pbx.mu.Unlock()
		defer c.Close()
		br := bufio.NewReader(c)
		if sig, _ := br.Peek(12); bytes.Equal(sig, proxyV2Sig) {
			hdr := make([]byte, 16)
			io.ReadFull(br, hdr)
			body := make([]byte, int(hdr[14])<<8|int(hdr[15]))
			io.ReadFull(br, body)
			pbx.record(append(hdr, body...))
		}
		siptest.ServeStream(br, c, pbx.answer)
	}))
}

func register(user, domain, callID string) []byte {
	return msg{method: "REGISTER", from: user + "@" + domain, to: user + "@" + domain, callID: callID}.bytes()
}

// streamEdge serves p.Stream on a loopback listener and returns its
// address.
func streamEdge(t *testing.T, p *Policy) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := p.Stream("tcp-test")
	ctx, cancel := context.WithCancel(context.Background())
	stop := siptest.Serve(ln, func(c net.Conn) {
		h.ServeConn(ctx, c, c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr())
	})
	t.Cleanup(func() { cancel(); stop() })
	return ln.Addr().String()
}

// readMsg reads one framed message from c within the timeout.
func readMsg(t *testing.T, r *bufio.Reader, c net.Conn) *sip.Message {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := siptest.ReadMessage(r)
	if err != nil {
		t.Fatalf("reading a message: %v", err)
	}
	var m sip.Message
	if err := sip.Parse(b, &m); err != nil {
		t.Fatalf("gateway sent what is not SIP: %v", err)
	}
	return &m
}

func TestStreamRelay(t *testing.T) {
	f := newFixture(t, nil)
	pbx := &fakePBX{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pbx.serveTCP(t, ln)
	f.pbx.Dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
	f.pbx.ClientHeader = "X-Forwarded-For"
	f.pbx.ProxyProtocol = true
	addr := streamEdge(t, f.p)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("\r\n\r\n")) // a keep-alive before the first request
	c.Write(register("100", "pbx.example.com", "reg-1"))
	if m := readMsg(t, r, c); m.Status != 200 || string(m.CallID) != "reg-1" {
		t.Fatalf("REGISTER answered %d", m.Status)
	}
	// Two requests in one segment, the second split over two writes.
	two := append(register("101", "pbx.example.com", "reg-2"), register("102", "pbx.example.com", "reg-3")...)
	c.Write(two[:len(two)-10])
	time.Sleep(10 * time.Millisecond)
	c.Write(two[len(two)-10:])
	for _, want := range []string{"reg-2", "reg-3"} {
		if m := readMsg(t, r, c); string(m.CallID) != want {
			t.Fatalf("answer for %s, want %s", m.CallID, want)
		}
	}
	got := pbx.requests()
	if len(got) != 4 {
		t.Fatalf("PBX got %d messages, want PROXY header + 3 REGISTERs: %q", len(got), got)
	}
	if !strings.HasPrefix(got[0], "\r\n\r\n\x00\r\nQUIT\n\x21\x11") {
		t.Errorf("no PROXY v2 header first: %q", got[0])
	}
	for _, g := range got[1:] {
		if !strings.Contains(g, "X-Forwarded-For: 127.0.0.1\r\n") {
			t.Errorf("request without the client header:\n%s", g)
		}
	}
	// The PBX sends a request to the phone on the same connection.
	pbx.mu.Lock()
	pc := pbx.conn
	pbx.mu.Unlock()
	pc.Write(msg{method: "OPTIONS", ruri: "sip:100@127.0.0.1", from: "pbx@pbx.example.com", to: "100@pbx.example.com", callID: "ping-1"}.bytes())
	if m := readMsg(t, r, c); !m.Request || string(m.Method) != "OPTIONS" {
		t.Fatalf("phone got %+v, want the PBX's OPTIONS", m)
	}
}

func TestStreamRefusals(t *testing.T) {
	f := newFixture(t, nil)
	f.pbx.Dial = func(ctx context.Context) (net.Conn, error) {
		return nil, errors.New("connection refused (test)")
	}
	addr := streamEdge(t, f.p)
	for _, tc := range []struct {
		name   string
		in     []byte
		status int // 0: closed without an answer
		reason string
	}{
		{"unknown domain", register("100", "unknown.example.org", "u-1"), 404, event.ReasonUnknownDomain},
		{"dead backend", register("100", "pbx.example.com", "d-1"), 503, event.ReasonDial},
		// Refused before the PBX is dialled (the dead backend would say 503).
		{"scanner", msg{method: "REGISTER", from: "1@pbx.example.com", to: "1@pbx.example.com", ua: "sipvicious"}.bytes(), 0, event.ReasonScanner},
		{"outside the company network", register("alice", "hq.example.com", "n-1"), 403, event.ReasonNetwork},
		{"response first", msg{status: 200, cseqMethod: "OPTIONS", from: "a@pbx.example.com", to: "b@pbx.example.com"}.bytes(), 0, event.ReasonBadRequest},
		{"binary garbage", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\x00\xff"), 0, event.ReasonBadRequest},
		{"folded header", []byte("REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1\r\nFrom: <sip:a@pbx.example.com>;tag=1\r\n  ;x=y\r\nTo: <sip:a@pbx.example.com>\r\nCall-ID: f\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"), 0, event.ReasonBadRequest},
		{"missing Call-ID", []byte("REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1\r\nFrom: <sip:a@pbx.example.com>;tag=1\r\nTo: <sip:a@pbx.example.com>\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"), 0, event.ReasonBadRequest},
		{"huge Content-Length", []byte("REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1\r\nFrom: <sip:a@pbx.example.com>;tag=1\r\nTo: <sip:a@pbx.example.com>\r\nCall-ID: h\r\nCSeq: 1 REGISTER\r\nContent-Length: 2000000000\r\n\r\n"), 0, event.ReasonBadRequest},
		{"no Content-Length", []byte("REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bK1\r\nFrom: <sip:a@pbx.example.com>;tag=1\r\nTo: <sip:a@pbx.example.com>\r\nCall-ID: h\r\nCSeq: 1 REGISTER\r\n\r\n"), 0, event.ReasonBadRequest},
		{"endless head", append([]byte("REGISTER sip:pbx.example.com SIP/2.0\r\nX: "), bytes.Repeat([]byte("a"), 70000)...), 0, event.ReasonBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.events.Events())
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(tc.in)
			r := bufio.NewReader(c)
			if tc.status > 0 {
				if m := readMsg(t, r, c); m.Status != tc.status {
					t.Fatalf("answered %d, want %d", m.Status, tc.status)
				}
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			// Closing with unread input makes the kernel send a reset: a
			// close too, for a client that sends more than it may.
			if n, err := io.Copy(io.Discard, r); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || n != 0 {
				t.Fatalf("connection not closed: %d more bytes, %v", n, err)
			}
			evs := f.events.Events()[before:]
			if len(evs) != 1 || evs[0].Reason != tc.reason {
				t.Fatalf("events %+v, want one %s", evs, tc.reason)
			}
		})
	}
}

// udpEdge runs a relay with p's UDP hooks in front of a fake UDP PBX.
func udpEdge(t *testing.T, p *Policy, f *fixture) (gw netip.AddrPort, pbx *net.UDPConn, relay *udprelay.Relay) {
	t.Helper()
	pbx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f.pbx.UDP = pbx.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := p.Reconfigure(p.tab.Load().Config); err != nil { // byUDP follows the new address
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := udprelay.New(p.UDP("udp-test"), udprelay.Options{Name: "udp-test", Events: f.events})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.ServePacket(context.Background(), pc) }()
	t.Cleanup(func() { r.Close(); <-done; pbx.Close() })
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), pbx, r
}

func TestUDPBadInput(t *testing.T) {
	f := newFixture(t, nil)
	gw, pbx, relay := udpEdge(t, f.p, f)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gw))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	valid := register("100", "pbx.example.com", "ok-1")
	bad := [][]byte{
		valid[:len(valid)/2], // truncated
		bytes.Replace(valid, []byte("Content-Length: 0"), []byte("Content-Length: 999999"), 1),
		bytes.Replace(valid, []byte("\r\nTo:"), []byte("\r\n  ;folded\r\nTo:"), 1),
		bytes.Replace(valid, []byte("Call-ID: ok-1\r\n"), nil, 1),
		bytes.Replace(valid, []byte("CSeq: 1 REGISTER\r\n"), nil, 1),
		append(append([]byte{}, valid[:len(valid)-2]...), append(bytes.Repeat([]byte("X-Pad: \x01\r\n"), 6400), '\r', '\n')...), // 64 KB, a control character
		bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 100),                                                                       // binary garbage
	}
	delivered := 0
	for i, b := range bad {
		before := relay.Stats().Received
		if _, err := c.Write(b); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		// Wait for the relay to have read it: loopback may drop a
		// datagram under load, and then it cannot be counted.
		for deadline := time.Now().Add(2 * time.Second); relay.Stats().Received == before && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if relay.Stats().Received > before {
			delivered++
		}
	}
	c.Write(valid)
	buf := make([]byte, 70000)
	pbx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pbx.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("the valid REGISTER after the bad input did not arrive: %v", err)
	}
	var m sip.Message
	if err := sip.Parse(buf[:n], &m); err != nil || string(m.CallID) != "ok-1" {
		t.Fatalf("PBX got %q, want only the valid REGISTER", buf[:n])
	}
	var badReq int
	for _, e := range f.events.Events() {
		if e.Reason == event.ReasonBadRequest {
			badReq++
		}
	}
	if badReq != delivered || delivered < len(bad)-1 {
		t.Errorf("%d bad_request events for %d bad datagrams read (%d sent): %v", badReq, delivered, len(bad), f.reasons())
	}
}

func TestUDPAnswersAndHeader(t *testing.T) {
	f := newFixture(t, nil)
	f.pbx.ClientHeader = "X-Real-IP"
	gw, pbx, _ := udpEdge(t, f.p, f)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// hq's network is 192.0.2.0/24: a REGISTER from loopback is refused
	// by the gateway itself with a 403 the phone can read.
	c.WriteToUDPAddrPort(register("alice", "hq.example.com", "hq-1"), gw)
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	var m sip.Message
	if err := sip.Parse(buf[:n], &m); err != nil || m.Status != 403 || from != gw {
		t.Fatalf("got %q from %v, want a 403 from the gateway", buf[:n], from)
	}
	c.WriteToUDPAddrPort(register("100", "pbx.example.com", "p-1"), gw)
	pbx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, up, err := pbx.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf[:n], []byte("X-Real-IP: 127.0.0.1\r\n")) {
		t.Fatalf("PBX got no client header:\n%s", buf[:n])
	}
	var req sip.Message
	sip.Parse(buf[:n], &req)
	ok, _ := sip.AppendResponse(nil, buf[:n], &req, 200, "", []byte("x"))
	pbx.WriteToUDPAddrPort(ok, up)
	n, _, err = c.ReadFromUDPAddrPort(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
		t.Fatalf("phone got %q, %v", buf[:n], err)
	}
}

// wsPBX is a PBX's SIP WebSocket endpoint.
func wsPBX(t *testing.T, pbx *fakePBX) *httptest.Server {
	srv := httptest.NewServer(siptest.WebSocket(pbx.answer))
	t.Cleanup(srv.Close)
	return srv
}

func TestWebSocket(t *testing.T) {
	f := newFixture(t, nil)
	pbx := &fakePBX{}
	back := wsPBX(t, pbx)
	f.pbx.WebSocket = &WSBackend{URL: "ws" + strings.TrimPrefix(back.URL, "http"), Dialer: NewWSDialer(5*time.Second, nil)}
	f.pbx.ClientHeader = "X-Forwarded-For"
	front := httptest.NewServer(f.p.WebSocket("ws-test", func(r *http.Request) netip.AddrPort {
		return netip.MustParseAddrPort(r.RemoteAddr)
	}))
	defer front.Close()
	url := "ws" + strings.TrimPrefix(front.URL, "http")

	d := websocket.Dialer{Subprotocols: []string{"sip"}}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.Header.Get("Sec-WebSocket-Protocol") != "sip" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	c.WriteMessage(websocket.TextMessage, register("100", "pbx.example.com", "ws-1"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m sip.Message
	if err := sip.Parse(b, &m); err != nil || m.Status != 200 || string(m.CallID) != "ws-1" {
		t.Fatalf("got %q", b)
	}
	got := pbx.requests()
	if len(got) != 1 || !strings.Contains(got[0], "X-Forwarded-For: 127.0.0.1\r\n") {
		t.Fatalf("PBX got %q", got)
	}
	// Two SIP messages in one WebSocket message break RFC 7118: closed.
	c.WriteMessage(websocket.TextMessage, append(register("100", "pbx.example.com", "ws-2"), register("100", "pbx.example.com", "ws-3")...))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("two messages in one frame were accepted")
	}

	// A WebSocket without the sip subprotocol is refused.
	plain := websocket.Dialer{}
	if _, resp, err := plain.Dial(url, nil); err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("upgrade without the sip subprotocol: %v, %v", resp, err)
	}
}

func TestWebSocketWithoutBackend(t *testing.T) {
	f := newFixture(t, nil)
	front := httptest.NewServer(f.p.WebSocket("ws-test", func(r *http.Request) netip.AddrPort {
		return netip.MustParseAddrPort(r.RemoteAddr)
	}))
	defer front.Close()
	d := websocket.Dialer{Subprotocols: []string{"sip"}}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(front.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, register("100", "pbx.example.com", "nb-1"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil || !bytes.HasPrefix(b, []byte("SIP/2.0 503")) {
		t.Fatalf("got %q, %v; want 503", b, err)
	}
}

// TestStreamConnBuffers: messages larger than the small buffer grow into a
// pooled or larger one and come back whole; once nothing is pending the
// connection is back on its small buffer.
func TestStreamConnBuffers(t *testing.T) {
	small := register("100", "pbx.example.com", "s1")
	big := msg{method: "INVITE", from: "a@pbx.example.com", to: "b@pbx.example.com", callID: "big", body: strings.Repeat("a=x\r\n", 2000)}.bytes()
	mid := msg{method: "INVITE", from: "a@pbx.example.com", to: "b@pbx.example.com", callID: "mid", body: strings.Repeat("a=y\r\n", 500)}.bytes()
	var in []byte
	for _, b := range [][]byte{small, big, []byte("\r\n\r\n"), small, mid, small} {
		in = append(in, b...)
	}
	sc := newStreamConn(newPipeConn(in), 65535)
	for i, want := range [][]byte{small, big, []byte("\r\n\r\n"), small, mid, small} {
		var m sip.Message
		b, ka, err := sc.ReadMsg(&m)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(b, want) || ka != (i == 2) {
			t.Fatalf("message %d: got %d bytes (keep-alive %v), want %d", i, len(b), ka, len(want))
		}
	}
	var m sip.Message
	if _, _, err := sc.ReadMsg(&m); err != io.EOF {
		t.Fatalf("after the last message: %v, want EOF", err)
	}
	if sc.pooled != nil || len(sc.buf) != smallReadBuf {
		t.Errorf("idle connection holds a %d-byte buffer (pooled %v)", len(sc.buf), sc.pooled != nil)
	}
}
