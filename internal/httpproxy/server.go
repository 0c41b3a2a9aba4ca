package httpproxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/listen"
)

// ServerOptions configures a Server.
type ServerOptions struct {
	// ReadHeaderTimeout bounds reading a request's headers (and, for
	// connections handed over before their TLS handshake, the handshake).
	// Zero means 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle that long. Zero means
	// 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header size (HTTP/1 and HTTP/2);
	// larger requests get 431. Zero means 64 KiB.
	MaxHeaderBytes int
	// Log receives net/http's own messages (TLS and protocol noise from
	// clients) at debug level. Nil discards.
	Log *slog.Logger
	// Events receives an event for every request net/http refuses before
	// the handler sees it. Nil discards.
	Events event.Sink
	// Listener names the listener in events and logs.
	Listener string
	// NetHTTPOnly serves every connection with net/http, never with the
	// lean HTTP/1.1 path (see the package documentation). For comparisons
	// and as a fallback should the lean path misbehave.
	NetHTTPOnly bool
	// Lean, when set, is what the lean path serves plain HTTP/1.1 requests
	// with although the Server's handler is another http.Handler — one
	// that sends protocol upgrades (which the lean path hands to net/http)
	// elsewhere and every other request to Lean, as the gateway's handler
	// for listeners that carry SIP over WebSocket beside HTTP does. An
	// empty Lean hands every request to net/http and the Server's handler.
	Lean *Swappable
}

// Server defaults.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// Server serves HTTP/1.x and HTTP/2 on connections that a listener has
// already accepted and handed over with ServeConn. There is one Server per
// listener.
type Server struct {
	srv       *http.Server
	ln        *chanListener
	h         http.Handler
	events    event.Sink
	listener  string
	log       *slog.Logger
	now       func() time.Time
	baseCtx   context.Context
	cancel    context.CancelFunc
	startOnce sync.Once
	serveDone chan struct{}

	// Lean path settings.
	lean              bool       // s.h is a *Swappable or *Handler, or leanH is set, and NetHTTPOnly is off
	leanH             *Swappable // ServerOptions.Lean
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	leanClosing       atomic.Bool
	leanWG            sync.WaitGroup // lean connections being served

	mu        sync.Mutex // guards the fields below
	closing   bool
	handlers  sync.WaitGroup // ServeHTTP calls in flight, incl. upgraded ones
	leanConns map[*leanConn]struct{}
}

// NewServer returns a Server that passes requests to h (usually a
// *Swappable). It starts nothing until the first ServeConn.
func NewServer(o ServerOptions, h http.Handler) *Server {
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Events == nil {
		o.Events = event.Discard
	}
	log := o.Log.With("component", "httpproxy", "listener", o.Listener)
	s := &Server{
		ln: &chanListener{
			conns:  make(chan net.Conn),
			closed: make(chan struct{}),
			name:   o.Listener,
		},
		h:         h,
		events:    o.Events,
		listener:  o.Listener,
		log:       log,
		now:       time.Now,
		serveDone: make(chan struct{}),

		readHeaderTimeout: o.ReadHeaderTimeout,
		idleTimeout:       o.IdleTimeout,
		maxHeaderBytes:    o.MaxHeaderBytes,
		leanConns:         make(map[*leanConn]struct{}),
	}
	switch h.(type) {
	case *Swappable, *Handler:
		s.lean = !o.NetHTTPOnly
	}
	if o.Lean != nil {
		s.leanH = o.Lean
		s.lean = !o.NetHTTPOnly
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	s.srv = &http.Server{
		Handler:           serverHandler{s},
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		Protocols:         &protos,
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if wc := asWatchConn(c); wc != nil {
				return context.WithValue(ctx, watchConnKey{}, wc)
			}
			return ctx
		},
		// The first request answered (idle) or the connection taken over
		// (a WebSocket): the listener's admission slot is free again.
		ConnState: func(c net.Conn, st http.ConnState) {
			if st == http.StateIdle || st == http.StateHijacked {
				listen.Settle(c)
			}
		},
	}
	return s
}

// ServeConn hands one accepted connection to the server and returns at
// once. c is one of:
//   - a plain connection (possibly replaying sniffed bytes): HTTP/1.x, or
//     HTTP/2 with prior knowledge;
//   - a connection whose TLS the listener terminated, exposing
//     ConnectionState() tls.ConnectionState: HTTP/1.x with r.TLS set;
//   - a *tls.Conn (handshake done or not): HTTP/2 when ALPN chose "h2",
//     else HTTP/1.x.
//
// A non-*tls.Conn that negotiated "h2" is refused with ErrH2NeedsTLSConn.
// After Shutdown, c is closed and http.ErrServerClosed returned.
//
// HTTP/1 connections go to the lean path when the Server's handler is a
// *Swappable or *Handler; it hands a connection over to net/http at a
// request boundary when a request needs what only net/http does.
func (s *Server) ServeConn(c net.Conn) error { return s.serveConn(c, false) }

// ServeConnHere is ServeConn, except that an HTTP/1 connection the lean
// path takes is served on the calling goroutine: it returns once the
// connection is closed or handed over to net/http. A listener whose
// connection goroutine has nothing else to do saves a goroutine (and its
// stack growth) per connection.
func (s *Server) ServeConnHere(c net.Conn) error { return s.serveConn(c, true) }

func (s *Server) serveConn(c net.Conn, here bool) error {
	var cs connectionStater
	switch tc := c.(type) {
	case *tls.Conn:
		// An h2 or not yet handshaken *tls.Conn must stay a *tls.Conn for
		// net/http.
		st := tc.ConnectionState()
		if !st.HandshakeComplete || st.NegotiatedProtocol == "h2" {
			return s.toNetHTTP(c)
		}
		cs = tc
	case connectionStater:
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			_ = c.Close()
			return ErrH2NeedsTLSConn
		}
		cs = tc
	}
	if !s.lean {
		return s.handoff(c, cs)
	}
	lc := newLeanConn(s, c, cs)
	s.mu.Lock()
	if s.leanClosing.Load() {
		s.mu.Unlock()
		_ = c.Close()
		return http.ErrServerClosed
	}
	s.leanConns[lc] = struct{}{}
	s.leanWG.Add(1)
	s.mu.Unlock()
	if here {
		lc.serve()
	} else {
		go lc.serve()
	}
	return nil
}

// leanDone unregisters a lean connection that closed or was handed over.
func (s *Server) leanDone(lc *leanConn) {
	s.mu.Lock()
	delete(s.leanConns, lc)
	s.mu.Unlock()
	s.leanWG.Done()
}

// handler returns the Handler for the lean path, nil if there is none
// (an empty Swappable: net/http answers 503).
func (s *Server) handler() *Handler {
	if s.leanH != nil {
		return s.leanH.p.Load()
	}
	switch h := s.h.(type) {
	case *Swappable:
		return h.p.Load()
	case *Handler:
		return h
	}
	return nil
}

// handoff gives c to net/http, wrapped so that its refusals are reported
// and, with cs, Request.TLS is set.
func (s *Server) handoff(c net.Conn, cs connectionStater) error {
	if cs != nil {
		c = &watchTLSConn{watchConn{Conn: c, s: s}, cs}
	} else {
		c = &watchConn{Conn: c, s: s}
	}
	return s.toNetHTTP(c)
}

// toNetHTTP passes c to the http.Server.
func (s *Server) toNetHTTP(c net.Conn) error {
	s.startOnce.Do(func() { go s.serve() })
	select {
	case <-s.ln.closed:
		_ = c.Close()
		return http.ErrServerClosed
	default:
	}
	select {
	case s.ln.conns <- c:
		return nil
	case <-s.ln.closed:
		_ = c.Close()
		return http.ErrServerClosed
	}
}

func (s *Server) serve() {
	defer close(s.serveDone)
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("http server stopped", "err", err)
	}
}

// Shutdown stops accepting connections, lets requests in flight finish
// until ctx is done, then closes what remains, including upgraded
// (WebSocket) connections, and waits for the handlers to return. It is
// safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startOnce.Do(func() { close(s.serveDone) }) // never served: nothing to start later
	// Lean connections: idle ones close now, busy ones after their
	// current response.
	s.mu.Lock()
	s.leanClosing.Store(true)
	for lc := range s.leanConns {
		lc.closeIdle()
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	_ = s.ln.Close()
	if err != nil {
		_ = s.srv.Close()
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	// Upgraded connections are not tracked by http.Server; cancelling the
	// base context ends their relays and any backend request still running.
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		s.leanWG.Wait()
		<-s.serveDone
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		if err == nil {
			err = ctx.Err()
		}
		// Cut the lean connections still busy; their goroutines end as
		// soon as their I/O fails.
		s.mu.Lock()
		for lc := range s.leanConns {
			lc.forceClose()
		}
		s.mu.Unlock()
		select {
		case <-done:
		case <-time.After(time.Second):
		}
	}
	return err
}

type serverHandler struct{ s *Server }

func (sh serverHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if wc, _ := r.Context().Value(watchConnKey{}).(*watchConn); wc != nil {
		wc.handled.Store(true)
	}
	s := sh.s
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()
	s.h.ServeHTTP(w, r)
}

// connectionStater is what net/http looks for to set Request.TLS on a
// connection that is not a *tls.Conn.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

type watchConnKey struct{}

// watchConn notices net/http answering a connection by itself: if the first
// bytes written are an HTTP/1 4xx or 5xx status line and no request reached
// the handler, net/http refused the request (oversized headers, no Host,
// malformed request line, bad transfer encoding) and an event is emitted.
type watchConn struct {
	net.Conn
	s       *Server
	handled atomic.Bool // a request reached the handler
	checked atomic.Bool // the first write was inspected
}

// NetConn returns the connection below (for listen.Settle).
func (c *watchConn) NetConn() net.Conn { return c.Conn }

func (c *watchConn) Write(p []byte) (int, error) {
	if !c.checked.Load() && c.checked.CompareAndSwap(false, true) && !c.handled.Load() {
		c.s.refused(c, p)
	}
	return c.Conn.Write(p)
}

// watchTLSConn is a watchConn over a TLS-terminated connection; it keeps
// ConnectionState visible so net/http sets Request.TLS.
type watchTLSConn struct {
	watchConn
	cs connectionStater
}

func (c *watchTLSConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

func asWatchConn(c net.Conn) *watchConn {
	switch wc := c.(type) {
	case *watchConn:
		return wc
	case *watchTLSConn:
		return &wc.watchConn
	}
	return nil
}

// refused emits the event for a response net/http wrote by itself.
func (s *Server) refused(c *watchConn, p []byte) {
	if len(p) < 12 || !(bytes.HasPrefix(p, []byte("HTTP/1.1 ")) || bytes.HasPrefix(p, []byte("HTTP/1.0 "))) {
		return
	}
	if p[9] != '4' && p[9] != '5' {
		return
	}
	line := p[9:]
	if i := bytes.IndexByte(line, '\r'); i >= 0 {
		line = line[:i]
	}
	if len(line) > 128 {
		line = line[:128]
	}
	var src netip.Addr
	if ra := c.RemoteAddr(); ra != nil {
		src = peerAddr(ra.String())
	}
	s.events.Emit(event.Event{
		Time:     s.now(),
		Kind:     event.RejectedByGateway,
		Source:   src,
		Listener: s.listener,
		Proto:    "http",
		Reason:   event.ReasonBadRequest,
		Detail:   event.Clip(string(line), 128),
	})
}

// chanListener is the net.Listener the http.Server accepts from: the
// connections ServeConn hands over.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	name   string
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return listenerAddr(l.name) }

type listenerAddr string

func (a listenerAddr) Network() string { return "pbxgate" }
func (a listenerAddr) String() string  { return string(a) }

// Swappable is an http.Handler whose *Handler can be replaced while
// serving (configuration reload). The zero value answers 503 until a
// Handler is installed.
type Swappable struct {
	p atomic.Pointer[Handler]
}

// Swap installs h and returns the Handler it replaces (nil the first
// time). The caller closes the old Handler when it no longer needs it.
func (s *Swappable) Swap(h *Handler) (old *Handler) { return s.p.Swap(h) }

// ServeHTTP passes the request to the current Handler.
func (s *Swappable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.p.Load(); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("503 service unavailable\n"))
}
