package sipedge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sip"
)

// WSBackend is a PBX's SIP WebSocket endpoint.
type WSBackend struct {
	// URL is ws://host:port/path or wss://...
	URL string
	// Dialer connects to it; its Subprotocols must be ["sip"].
	Dialer *websocket.Dialer
}

// Subprotocol is the WebSocket subprotocol of SIP (RFC 7118).
const Subprotocol = "sip"

// WebSocket buffers: a small read buffer per connection, write buffers
// taken from a pool only while a message is written.
const wsReadBuf = 1024

var wsWritePool = &sync.Pool{}

// NewWSDialer returns a dialer for backend WebSockets offering the sip
// subprotocol; netDial, if set, opens its TCP connections. The caller sets
// TLSClientConfig for wss.
func NewWSDialer(connectTimeout time.Duration, netDial func(ctx context.Context, network, addr string) (net.Conn, error)) *websocket.Dialer {
	return &websocket.Dialer{
		NetDialContext:   netDial,
		HandshakeTimeout: connectTimeout,
		Subprotocols:     []string{Subprotocol},
		ReadBufferSize:   wsReadBuf,
		WriteBufferPool:  wsWritePool,
	}
}

// IsSIPUpgrade reports whether r is a WebSocket upgrade offering the sip
// subprotocol.
func IsSIPUpgrade(r *http.Request) bool {
	if !websocket.IsWebSocketUpgrade(r) {
		return false
	}
	for _, p := range websocket.Subprotocols(r) {
		if strings.EqualFold(p, Subprotocol) {
			return true
		}
	}
	return false
}

// WebSocket returns the handler of SIP over WebSocket for one listener.
// Requests that are not sip upgrades get 400. client says which address a
// request comes from (the connection's peer, or the client behind a
// trusted proxy).
func (p *Policy) WebSocket(listener string, client func(*http.Request) netip.AddrPort) http.Handler {
	up := &websocket.Upgrader{
		Subprotocols:    []string{Subprotocol},
		ReadBufferSize:  wsReadBuf,
		WriteBufferPool: wsWritePool,
		// WebRTC phones are web pages served from anywhere; the
		// WebSocket carries no cookie or ambient authority (SIP digest
		// authentication runs inside it), so the Origin is not checked.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, _ error) {
			http.Error(w, http.StatusText(status), status)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap := client(r)
		transport := "ws"
		if r.TLS != nil {
			transport = "wss"
		}
		s := &session{listener: listener, transport: transport, client: ap, lm: p.met.listener(listener, transport)}
		if !IsSIPUpgrade(r) {
			p.emit(s, event.RejectedByGateway, event.ReasonBadRequest, "", "not a WebSocket upgrade offering the sip subprotocol")
			http.Error(w, "SIP over WebSocket only", http.StatusBadRequest)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade answered the client
		}
		t := p.tab.Load()
		cl := newWSConn(c, t.MaxMessage)
		_ = p.serve(r.Context(), s, cl, func(ctx context.Context, svc *Service) (msgConn, error) {
			if svc.WebSocket == nil {
				return nil, fmt.Errorf("sip service %q has no backend.websocket", svc.Name)
			}
			ctx, cancel := context.WithTimeout(ctx, t.ConnectTimeout)
			defer cancel()
			bc, resp, err := svc.WebSocket.Dialer.DialContext(ctx, svc.WebSocket.URL, nil)
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			if err != nil {
				return nil, fmt.Errorf("backend websocket %s: %w", svc.WebSocket.URL, err)
			}
			if bc.Subprotocol() != Subprotocol {
				bc.Close()
				return nil, fmt.Errorf("backend websocket %s did not accept the sip subprotocol", svc.WebSocket.URL)
			}
			return newWSConn(bc, t.MaxMessage), nil
		})
	})
}

// wsConn carries one SIP message per WebSocket message (RFC 7118).
type wsConn struct {
	c      *websocket.Conn
	max    int
	buf    bytes.Buffer
	wmu    sync.Mutex
	closed atomic.Bool
}

func newWSConn(c *websocket.Conn, maxMessage int) *wsConn {
	c.SetReadLimit(int64(maxMessage))
	return &wsConn{c: c, max: maxMessage}
}

func (wc *wsConn) ReadMsg(m *sip.Message) ([]byte, bool, error) {
	for {
		typ, r, err := wc.c.NextReader()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				return nil, false, &sip.ParseError{Err: sip.ErrTooLong}
			}
			return nil, false, err
		}
		if typ != websocket.TextMessage && typ != websocket.BinaryMessage {
			continue
		}
		wc.buf.Reset()
		if _, err := io.Copy(&wc.buf, r); err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				return nil, false, &sip.ParseError{Err: sip.ErrTooLong}
			}
			return nil, false, err
		}
		b := wc.buf.Bytes()
		if len(bytes.Trim(b, "\r\n")) == 0 {
			if len(b) == 0 {
				continue
			}
			return b, true, nil
		}
		if err := sip.Parse(b, m); err != nil {
			return nil, false, err
		}
		if m.HeaderLen+max(m.ContentLength, 0) != len(b) {
			// RFC 7118: one message per WebSocket message, nothing more.
			return nil, false, &sip.ParseError{Err: sip.ErrContentLength}
		}
		if wc.buf.Cap() > pooledBuf {
			// Give a large buffer back once its message is handled.
			b = bytes.Clone(b)
			wc.buf = bytes.Buffer{}
		}
		return b, false, nil
	}
}

func (wc *wsConn) WriteMsg(b []byte) error {
	wc.wmu.Lock()
	defer wc.wmu.Unlock()
	_ = wc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	typ := websocket.TextMessage
	if !utf8.Valid(b) {
		typ = websocket.BinaryMessage
	}
	return wc.c.WriteMessage(typ, b)
}

func (wc *wsConn) SetReadDeadline(t time.Time) error { return wc.c.SetReadDeadline(t) }

func (wc *wsConn) Close() error {
	if wc.closed.Swap(true) {
		return nil
	}
	return wc.c.Close()
}
