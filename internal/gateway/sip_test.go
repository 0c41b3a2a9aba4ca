package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/siptest"
)

// sipPBX answers 200 to every request over UDP, TCP and WebSocket on
// loopback and returns its UDP/TCP address and WebSocket URL.
func sipPBX(t *testing.T) (addr, wsURL string) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = tl.Addr().String()
	ul, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	udpDone := make(chan struct{})
	go func() {
		defer close(udpDone)
		siptest.ServeUDP(ul, siptest.OK)
	}()
	stop := siptest.Serve(tl, func(c net.Conn) {
		defer c.Close()
		siptest.ServeStream(c, c, siptest.OK)
	})
	t.Cleanup(func() { stop(); ul.Close(); <-udpDone })
	ws := httptest.NewServer(siptest.WebSocket(siptest.OK))
	t.Cleanup(ws.Close)
	return addr, "ws" + strings.TrimPrefix(ws.URL, "http")
}

func sipRegister(user, domain, callID string) []byte {
	return fmt.Appendf(nil, "REGISTER sip:%[2]s SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK%[3]s\r\n"+
		"From: <sip:%[1]s@%[2]s>;tag=1\r\nTo: <sip:%[1]s@%[2]s>\r\nCall-ID: %[3]s\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n",
		user, domain, callID)
}

// expectStatus reads one SIP message from r and checks its status.
func expectStatus(t *testing.T, r *bufio.Reader, status int) {
	t.Helper()
	b, err := siptest.ReadMessage(r)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	var m sip.Message
	if err := sip.Parse(b, &m); err != nil || m.Status != status {
		t.Fatalf("answer %q (%v), want status %d", b, err, status)
	}
}

// TestSIPListeners: SIP over UDP, TCP and secure WebSocket through one
// gateway, with HTTP on the WebSocket's port still reaching its service,
// and a reload that keeps the UDP socket.
func TestSIPListeners(t *testing.T) {
	pbx, wsURL := sipPBX(t)
	web := origin(t, "portal")
	yaml := fmt.Sprintf(`data_dir: %s
listeners:
  - {name: sip-udp, address: "127.0.0.1:0", transport: udp}
  - {name: sip-tcp, address: "127.0.0.1:0", protocols: [sip]}
  - {name: wss, address: "127.0.0.1:0", tls: required, protocols: [http, sip-ws]}
services:
  - name: pbx
    protocol: sip
    domains: [pbx.test]
    backend: {address: %q, websocket: %q}
  - name: portal
    protocol: http
    hosts: [portal.test]
    backend: {address: %q}
fraud: {whitelist: [127.0.0.0/8]}
`, t.TempDir(), pbx, wsURL, web)
	rec := &event.Recorder{}
	g := start(t, parse(t, yaml), rec)

	// UDP.
	uc, err := net.Dial("udp", g.Addr("sip-udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	uc.Write(sipRegister("100", "pbx.test", "u1"))
	buf := make([]byte, 65536)
	n, err := uc.Read(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
		t.Fatalf("UDP: %q, %v", buf[:n], err)
	}
	// An unknown domain from a new address: no answer, an event. (A flow
	// keeps the backend its first request chose, like a connection.)
	uc2, err := net.Dial("udp", g.Addr("sip-udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc2.Close()
	uc2.Write(sipRegister("100", "other.test", "u2"))
	uc2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := uc2.Read(buf); err == nil {
		t.Fatalf("unknown domain over UDP answered %q", buf[:n])
	}

	// TCP.
	tc, err := net.Dial("tcp", g.Addr("sip-tcp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	tc.Write(sipRegister("101", "pbx.test", "t1"))
	expectStatus(t, bufio.NewReader(tc), 200)

	// Secure WebSocket, and HTTPS on the same port.
	d := websocket.Dialer{Subprotocols: []string{"sip"}, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	wc, _, err := d.Dial("wss://"+g.Addr("wss").String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wc.SetReadDeadline(time.Now().Add(5 * time.Second))
	wc.WriteMessage(websocket.TextMessage, sipRegister("102", "pbx.test", "w1"))
	if _, b, err := wc.ReadMessage(); err != nil || !bytes.HasPrefix(b, []byte("SIP/2.0 200")) {
		t.Fatalf("WSS: %q, %v", b, err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+g.Addr("wss").String()+"/", nil)
	req.Host = "portal.test"
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := new(bytes.Buffer)
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	if body.String() != "portal" {
		t.Fatalf("HTTPS beside sip-ws got %q", body)
	}

	// A reload keeps the UDP socket and flow and applies new routes.
	udpAddr := g.Addr("sip-udp").String()
	if err := g.Reload(parse(t, strings.Replace(yaml, "domains: [pbx.test]", "domains: [pbx.test, other.test]", 1))); err != nil {
		t.Fatal(err)
	}
	if got := g.Addr("sip-udp").String(); got != udpAddr {
		t.Fatalf("reload moved the UDP listener from %s to %s", udpAddr, got)
	}
	uc2.SetReadDeadline(time.Now().Add(5 * time.Second))
	uc2.Write(sipRegister("100", "other.test", "u3"))
	if n, err := uc2.Read(buf); err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
		t.Fatalf("after reload: %q, %v", buf[:n], err)
	}
	var unknown int
	for _, e := range rec.Events() {
		if e.Reason == event.ReasonUnknownDomain && e.Proto == "sip" {
			unknown++
		}
	}
	if unknown != 1 {
		t.Errorf("%d unknown_domain events, want 1", unknown)
	}
}

// TestUnbanLiftsFloodBlock: an operator's unban ends a SIP flood block
// at once (it is no ban: nothing else would lift it before block_for).
func TestUnbanLiftsFloodBlock(t *testing.T) {
	pbx, _ := sipPBX(t)
	yaml := fmt.Sprintf(`data_dir: %s
listeners:
  - {name: sip-udp, address: "127.0.0.1:0", transport: udp}
services:
  - name: pbx
    protocol: sip
    domains: [pbx.test]
    backend: {address: %q}
fraud: {whitelist: [127.0.0.0/8]}
sip: {flood: {limit: 3, block_for: 1h}}
`, t.TempDir(), pbx)
	g := start(t, parse(t, yaml), &event.Recorder{})
	c, err := net.Dial("udp", g.Addr("sip-udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 65536)
	answered := func(callID string) bool {
		c.Write(sipRegister("100", "pbx.test", callID))
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		return err == nil && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200"))
	}
	for i := range 3 {
		if !answered(fmt.Sprint("ok", i)) {
			t.Fatalf("request %d within the limit not answered", i+1)
		}
	}
	if answered("over") || answered("still") {
		t.Fatal("a flooding source is answered")
	}
	if _, _, err := g.sec.engine.Load().Unban(context.Background(), netip.MustParsePrefix("127.0.0.1/32")); err != nil {
		t.Fatal(err)
	}
	if !answered("after-unban") {
		t.Fatal("still blocked after unban")
	}
}
