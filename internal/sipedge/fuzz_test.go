package sipedge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pbxgate/pbxgate/internal/sip"
	"github.com/pbxgate/pbxgate/internal/sippolicy"
	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// seedMessages adds the sip package's message corpus and a few of ours.
func seedMessages(f *testing.F, add func([]byte)) {
	files, _ := filepath.Glob("../sip/testdata/messages/*")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			add(b)
		}
	}
	add(register("100", "pbx.example.com", "seed-1"))
	add(msg{method: "INVITE", from: "alice@hq.example.com", to: "0049301234567@hq.example.com", auth: "alice", body: "v=0\r\n"}.bytes())
	add(msg{status: 401, cseqMethod: "REGISTER", from: "100@pbx.example.com", to: "100@pbx.example.com", toTag: "x"}.bytes())
	add([]byte("\r\n\r\n"))
	add([]byte("\x00\x01\x00\x00\x21\x12\xa4\x42012345678901")) // a STUN binding
}

func fuzzFixture(f *testing.F) *fixture {
	return newFixture(f, func(c *Config) {
		c.Flood = sippolicy.FloodConfig{Limit: 60000, MaxSources: 1000}
	})
}

// FuzzUDPInspect: any datagram, either way, gives a decision without
// panicking; what the gateway sends is SIP.
func FuzzUDPInspect(f *testing.F) {
	seedMessages(f, func(b []byte) { f.Add(b, true); f.Add(b, false) })
	fx := fuzzFixture(f)
	fx.pbx.ClientHeader = "X-Forwarded-For"
	lm := NewMetrics(nil).listener("fuzz", "udp")
	scratch := make([]byte, udprelay.ScratchSize)
	flow := &udprelay.Flow{Client: netip.MustParseAddrPort("198.51.100.1:5060"), Backend: fx.pbx.UDP}
	f.Fuzz(func(t *testing.T, b []byte, fromClient bool) {
		fx.p.routeUDP("fuzz", lm, flow.Client, b)
		v := fx.p.inspectUDP("fuzz", lm, flow, b, fromClient, scratch)
		var m sip.Message
		if v.Reply != nil {
			if err := sip.Parse(v.Reply, &m); err != nil || m.Request {
				t.Fatalf("reply is no SIP response: %v\n%q", err, v.Reply)
			}
		}
		if v.Forward != nil && !bytes.Equal(v.Forward, b) {
			if err := sip.Parse(v.Forward, &m); err != nil {
				t.Fatalf("rewritten datagram does not parse: %v\n%q", err, v.Forward)
			}
		}
	})
}

// sinkConn is a backend that records what it gets and reads nothing.
type sinkConn struct {
	mu     sync.Mutex
	got    [][]byte
	closed chan struct{}
	once   sync.Once
}

func (s *sinkConn) ReadMsg(*sip.Message) ([]byte, bool, error) {
	<-s.closed
	return nil, false, io.EOF
}

func (s *sinkConn) WriteMsg(b []byte) error {
	s.mu.Lock()
	s.got = append(s.got, bytes.Clone(b))
	s.mu.Unlock()
	return nil
}
func (s *sinkConn) SetReadDeadline(time.Time) error { return nil }
func (s *sinkConn) Close() error                    { s.once.Do(func() { close(s.closed) }); return nil }

// pipeConn is the gateway's side of a client stream that sends in and
// then closes; what the gateway writes is discarded.
type pipeConn struct {
	net.Conn
	r *bytes.Reader
}

func (p *pipeConn) Read(b []byte) (int, error)       { return p.r.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return len(b), nil }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }
func (p *pipeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(198, 51, 100, 1), Port: 5060}
}
func (p *pipeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 5060} }

func newPipeConn(b []byte) *pipeConn { return &pipeConn{r: bytes.NewReader(b)} }

// FuzzStream: any byte stream from a client is framed, inspected and
// relayed without panicking, and only SIP reaches the PBX.
func FuzzStream(f *testing.F) {
	seedMessages(f, func(b []byte) { f.Add(b) })
	f.Add(bytes.Repeat(register("100", "pbx.example.com", "r"), 3))
	fx := fuzzFixture(f)
	fx.pbx.ClientHeader = "X-Forwarded-For"
	f.Fuzz(func(t *testing.T, in []byte) {
		be := &sinkConn{closed: make(chan struct{})}
		s := &session{listener: "fuzz", transport: "tcp", client: netip.MustParseAddrPort("198.51.100.1:5060"),
			lm: fx.p.met.listener("fuzz", "tcp")}
		cl := newStreamConn(newPipeConn(in), 2048)
		fx.p.serve(context.Background(), s, cl, func(context.Context, *Service) (msgConn, error) { return be, nil })
		for _, b := range be.got {
			var m sip.Message
			if len(bytes.Trim(b, "\r\n")) == 0 {
				continue
			}
			if err := sip.Parse(b, &m); err != nil {
				t.Fatalf("PBX got what is not SIP: %v\n%q", err, b)
			}
		}
	})
}

// hijacker is an http.ResponseWriter whose connection is one end of a
// pipe, for upgrading without a server.
type hijacker struct {
	http.ResponseWriter
	c net.Conn
}

func (h hijacker) Header() http.Header { return http.Header{} }
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return h.c, bufio.NewReadWriter(bufio.NewReader(h.c), bufio.NewWriter(h.c)), nil
}

// wsFrame is a masked client frame.
func wsFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 65536:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	key := []byte{1, 2, 3, 4}
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i%4])
	}
	return out
}

// FuzzWebSocketFrames: any bytes a client sends after the upgrade are
// read as WebSocket frames without panicking; each message read is one
// SIP message.
func FuzzWebSocketFrames(f *testing.F) {
	reg := register("100", "pbx.example.com", "ws")
	f.Add(wsFrame(true, websocket.TextMessage, reg))
	f.Add(append(wsFrame(false, websocket.TextMessage, reg[:20]), wsFrame(true, 0, reg[20:])...))
	f.Add(append(wsFrame(true, websocket.PingMessage, []byte("hi")), wsFrame(true, websocket.BinaryMessage, reg)...))
	f.Add(wsFrame(true, websocket.CloseMessage, []byte{3, 232}))
	f.Add(wsFrame(true, websocket.TextMessage, bytes.Repeat([]byte("a"), 70000)))
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}) // unmasked: a protocol error
	f.Add(wsFrame(true, websocket.TextMessage, []byte("\r\n\r\n")))
	up := &websocket.Upgrader{Subprotocols: []string{Subprotocol}, CheckOrigin: func(*http.Request) bool { return true }}
	f.Fuzz(func(t *testing.T, in []byte) {
		srv, cli := net.Pipe()
		defer cli.Close()
		req, _ := http.NewRequest(http.MethodGet, "http://gw/", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		req.Header.Set("Sec-WebSocket-Protocol", "sip")
		go func() {
			br := bufio.NewReader(cli)
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				return
			}
			resp.Body.Close()
			cli.Write(in)
			cli.Close()
		}()
		c, err := up.Upgrade(hijacker{c: srv}, req, nil)
		if err != nil {
			t.Fatalf("upgrade: %v", err)
		}
		wc := newWSConn(c, 4096)
		defer wc.Close()
		for range 1000 {
			var m sip.Message
			b, ka, err := wc.ReadMsg(&m)
			if err != nil {
				return
			}
			if !ka && m.HeaderLen+max(m.ContentLength, 0) != len(b) {
				t.Fatalf("ReadMsg returned %d bytes for a message of %d", len(b), m.HeaderLen+m.ContentLength)
			}
		}
	})
}
