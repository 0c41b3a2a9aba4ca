package sipedge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/listen"
	"github.com/pbxgate/pbxgate/internal/sip"
)

// writeTimeout bounds one write to a client or the PBX: a peer that does
// not read cannot stall the other direction for longer.
const writeTimeout = 10 * time.Second

// Buffers of a stream reader. An idle connection holds only its small
// embedded buffer: a message that does not fit moves to a pooled buffer
// (grown up to MaxMessage for a large one), which goes back to the pool as
// soon as nothing is left in it, so that 10,000 idle phones cost little.
const (
	smallReadBuf = 512
	pooledBuf    = 4 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, pooledBuf); return &b }}

// msgConn is one side of a SIP relay that carries whole messages: a
// framed TCP/TLS stream or a WebSocket.
type msgConn interface {
	// ReadMsg returns the next message (parsed into m) or keep-alive. b
	// is valid until the next ReadMsg. Errors wrapping *sip.ParseError
	// mean the peer sent something that is not SIP.
	ReadMsg(m *sip.Message) (b []byte, keepalive bool, err error)
	// WriteMsg writes one message or keep-alive; safe for concurrent use.
	WriteMsg(b []byte) error
	SetReadDeadline(t time.Time) error
	Close() error
}

// Stream returns the handler of SIP over TCP and TLS for one listener.
func (p *Policy) Stream(listener string) listen.Handler {
	return listen.HandlerFunc(func(ctx context.Context, c net.Conn, src netip.Addr) error {
		transport := "tcp"
		if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
			transport = "tls"
		}
		client := netip.AddrPortFrom(src, remotePort(c))
		s := &session{listener: listener, transport: transport, client: client,
			lm: p.met.listener(listener, transport)}
		t := p.tab.Load()
		cl := newStreamConn(c, t.MaxMessage)
		return p.serve(ctx, s, cl, func(ctx context.Context, svc *Service) (msgConn, error) {
			if svc.Dial == nil {
				return nil, fmt.Errorf("sip service %q has no stream backend", svc.Name)
			}
			bc, err := svc.Dial(ctx)
			if err != nil {
				return nil, err
			}
			listen.Settle(c) // routed, judged, connected: a phone stays for hours
			if svc.ProxyProtocol {
				hdr := appendProxyV2(nil, client, localAddrPort(c))
				_ = bc.SetWriteDeadline(time.Now().Add(writeTimeout))
				if _, err := bc.Write(hdr); err != nil {
					bc.Close()
					return nil, fmt.Errorf("write PROXY header: %w", err)
				}
			}
			return newStreamConn(bc, t.MaxMessage), nil
		})
	})
}

func remotePort(c net.Conn) uint16 {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

func localAddrPort(c net.Conn) netip.AddrPort {
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// dialFunc opens the backend side for a routed session.
type dialFunc func(ctx context.Context, svc *Service) (msgConn, error)

// serve relays one client connection: it routes by the first request,
// opens the backend side and inspects every message both ways until one
// side closes, fails, sends something that is not SIP, or both stay idle
// for the idle timeout.
func (p *Policy) serve(ctx context.Context, s *session, cl msgConn, dial dialFunc) error {
	defer cl.Close()
	t := p.tab.Load()
	idle := t.IdleTimeout
	var m sip.Message
	var first []byte
	for {
		_ = cl.SetReadDeadline(time.Now().Add(idle))
		b, ka, err := cl.ReadMsg(&m)
		if err != nil {
			p.readFailed(s, err, false)
			return ignoreClosed(err)
		}
		if !ka {
			first = b
			break
		}
	}
	if !m.Request {
		p.emit(s, event.RejectedByGateway, event.ReasonBadRequest, "", "the first message is a response")
		s.lm.refuse(event.ReasonBadRequest)
		return nil
	}
	svc := p.route(s, &m)
	if svc == nil {
		s.lm.refuse(event.ReasonUnknownDomain)
		p.answer(cl, first, &m, 404)
		return nil
	}
	s.svc = svc
	// The first request is judged before the PBX is dialled: a refused or
	// flood-blocked source costs no backend connection.
	v := p.decide(s, &m, true)
	if !v.forward {
		p.apply(s, first, &m, v, cl, nil, true)
		return nil
	}
	be, err := dial(ctx, svc)
	if err != nil {
		p.emit(s, event.BackendUnreachable, event.ReasonDial, string(m.From.User), err.Error())
		p.answer(cl, first, &m, 503)
		return err
	}
	defer be.Close()

	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	if sc, ok := be.(*streamConn); ok && sc.raw != nil {
		if w := p.watcher(); w != nil {
			return p.serveWatched(s, cl, sc, w, first, &m, v, &last, idle)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.pump(s, be, cl, false, &last, idle)
		cl.Close() // ends the client pump
	}()
	if p.apply(s, first, &m, v, cl, be, true) {
		p.pump(s, cl, be, true, &last, idle)
	}
	be.Close() // ends the backend pump
	<-done
	return nil
}

// serveWatched is serve's relay for a plain TCP backend on Linux: the
// backend side has no goroutine while it is quiet; the watcher starts one
// when the PBX sends something.
func (p *Policy) serveWatched(s *session, cl msgConn, be *streamConn, w *watcher, first []byte, m *sip.Message, v verdict, last *atomic.Int64, idle time.Duration) error {
	var bm sip.Message // only the one goroutine serving the backend uses it
	drain := func(wd *watched) {
		for {
			b, ka, err := be.tryReadMsg(&bm)
			switch {
			case errors.Is(err, errWouldBlock):
				if w.rearm(wd) != nil {
					cl.Close()
				}
				return
			case err != nil:
				p.readFailed(s, err, true)
				cl.Close() // ends the client pump, which ends serve
				return
			}
			last.Store(time.Now().UnixNano())
			if ka {
				if cl.WriteMsg(b) != nil {
					cl.Close()
					return
				}
				continue
			}
			if !p.handle(s, b, &bm, be, cl, false) {
				cl.Close()
				return
			}
		}
	}
	wd, err := w.add(be.raw, drain)
	if err != nil {
		be.Close()
		return err
	}
	if p.apply(s, first, m, v, cl, be, true) {
		p.pump(s, cl, be, true, last, idle)
	}
	w.remove(wd) // waits for a drain in progress
	be.Close()
	return nil
}

// pump reads messages from src and handles them until src fails or sends
// something that is not SIP. last is the time of the latest message either
// way: a read deadline ends the pump only when both directions were idle.
func (p *Policy) pump(s *session, src, dst msgConn, fromClient bool, last *atomic.Int64, idle time.Duration) {
	var m sip.Message
	for {
		_ = src.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		b, ka, err := src.ReadMsg(&m)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && time.Since(time.Unix(0, last.Load())) < idle {
				continue
			}
			p.readFailed(s, err, !fromClient)
			return
		}
		last.Store(time.Now().UnixNano())
		if ka {
			if dst.WriteMsg(b) != nil {
				return
			}
			continue
		}
		if !p.handle(s, b, &m, src, dst, fromClient) {
			return
		}
	}
}

// handle applies the policy to one message from sender and forwards it to
// peer or answers it. It returns false when the relay must end (a write
// failed).
func (p *Policy) handle(s *session, b []byte, m *sip.Message, sender, peer msgConn, fromClient bool) bool {
	return p.apply(s, b, m, p.decide(s, m, fromClient), sender, peer, fromClient)
}

// decide applies the policy to one message.
func (p *Policy) decide(s *session, m *sip.Message, fromClient bool) verdict {
	if fromClient {
		s.lm.in.Inc()
		return p.fromClient(s, m)
	}
	s.lm.out.Inc()
	return p.fromBackend(s, m)
}

// apply carries out a verdict on one message: the answer to sender, the
// message (rewritten) to peer. It returns false when a write failed.
func (p *Policy) apply(s *session, b []byte, m *sip.Message, v verdict, sender, peer msgConn, fromClient bool) bool {
	if v.status > 0 && !p.answer(sender, b, m, v.status) {
		return false
	}
	if !v.forward {
		s.lm.refuse(v.reason)
		return true
	}
	if fromClient && m.Request && s.svc.ClientHeader != "" {
		b = appendWithClientHeader(make([]byte, 0, len(b)+len(s.svc.ClientHeader)+48), b, m.HeaderLen,
			s.svc.ClientHeader, s.client.Addr())
	}
	return peer.WriteMsg(b) == nil
}

// answer sends the gateway's own response with status to req on c. It
// reports whether the write succeeded (true when no answer is due).
func (p *Policy) answer(c msgConn, req []byte, m *sip.Message, status int) bool {
	resp := p.appendAnswer(nil, req, m, status)
	if len(resp) == 0 {
		return true
	}
	return c.WriteMsg(resp) == nil
}

// readFailed reports why a side stopped: bad SIP from a client is an event,
// from the PBX a log line; closed connections and timeouts are normal.
func (p *Policy) readFailed(s *session, err error, fromBackend bool) {
	var pe *sip.ParseError
	if !errors.As(err, &pe) {
		return
	}
	if fromBackend {
		p.log.Warn("the PBX sent what is not SIP; connection closed", "service", s.svc.Name, "err", err)
		return
	}
	p.emit(s, event.RejectedByGateway, event.ReasonBadRequest, "", "not SIP: "+err.Error())
	s.lm.refuse(event.ReasonBadRequest)
}

func ignoreClosed(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	var pe *sip.ParseError
	if errors.As(err, &pe) {
		return nil
	}
	return err
}

// streamConn frames SIP messages on a TCP or TLS connection.
type streamConn struct {
	c      net.Conn
	raw    syscall.RawConn // plain TCP only: for reads without blocking
	fr     sip.Framer
	buf    []byte     // small[:], *pooled or a grown buffer
	pooled *[]byte    // the pool's buffer buf is, if any
	start  int        // first unconsumed byte of buf
	end    int        // end of the bytes read
	wmu    sync.Mutex // serialises writes
	closed atomic.Bool
	small  [smallReadBuf]byte
}

func newStreamConn(c net.Conn, maxMessage int) *streamConn {
	sc := &streamConn{c: c, fr: sip.Framer{MaxMessage: maxMessage}}
	sc.buf = sc.small[:]
	if tc, ok := c.(*net.TCPConn); ok {
		sc.raw, _ = tc.SyscallConn()
	}
	return sc
}

// errWouldBlock: tryReadMsg has no complete message and nothing more to
// read now.
var errWouldBlock = errors.New("sipedge: would block")

var errEOF = io.EOF

func (sc *streamConn) ReadMsg(m *sip.Message) ([]byte, bool, error) {
	return sc.readMsg(m, false)
}

// tryReadMsg is ReadMsg without blocking (plain TCP only): it returns
// errWouldBlock when no complete message is buffered and the socket has
// nothing more.
func (sc *streamConn) tryReadMsg(m *sip.Message) ([]byte, bool, error) {
	return sc.readMsg(m, true)
}

func (sc *streamConn) readMsg(m *sip.Message, nonblock bool) ([]byte, bool, error) {
	for {
		if sc.end > sc.start {
			n, ka, err := sc.fr.Next(sc.buf[sc.start:sc.end], m)
			if err != nil {
				return nil, false, err
			}
			if n > 0 {
				b := sc.buf[sc.start : sc.start+n]
				sc.start += n
				return b, ka, nil
			}
		}
		if err := sc.fill(nonblock); err != nil {
			return nil, false, err
		}
	}
}

// fill reads more bytes, making room first. It runs only when the caller
// is done with the last message returned, so consumed bytes can go: an
// empty buffer returns to the small one, pending bytes move to the front,
// a full buffer grows (the Framer bounds messages, so up to MaxMessage).
func (sc *streamConn) fill(nonblock bool) error {
	pending := sc.end - sc.start
	switch {
	case pending == 0:
		sc.release()
	case sc.start > 0:
		copy(sc.buf, sc.buf[sc.start:sc.end])
		sc.start, sc.end = 0, pending
	}
	if sc.end == len(sc.buf) {
		var nb []byte
		var pooled *[]byte
		if len(sc.buf) < pooledBuf {
			pooled = bufPool.Get().(*[]byte)
			nb = *pooled
		} else {
			nb = make([]byte, 2*len(sc.buf))
		}
		copy(nb, sc.buf[:sc.end])
		sc.putPooled()
		sc.buf, sc.pooled = nb, pooled
	}
	var n int
	var err error
	if nonblock {
		n, err = tryRead(sc.raw, sc.buf[sc.end:])
	} else {
		n, err = sc.c.Read(sc.buf[sc.end:])
	}
	sc.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// release goes back to the small buffer; nothing is pending.
func (sc *streamConn) release() {
	sc.putPooled()
	sc.buf = sc.small[:]
	sc.start, sc.end = 0, 0
}

func (sc *streamConn) putPooled() {
	if sc.pooled != nil {
		bufPool.Put(sc.pooled)
		sc.pooled = nil
	}
}

func (sc *streamConn) WriteMsg(b []byte) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	_ = sc.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := sc.c.Write(b)
	return err
}

func (sc *streamConn) SetReadDeadline(t time.Time) error { return sc.c.SetReadDeadline(t) }

func (sc *streamConn) Close() error {
	if sc.closed.Swap(true) {
		return nil
	}
	return sc.c.Close()
}
