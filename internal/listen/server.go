package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// Accept back-off after temporary errors (EMFILE, ...), as in net/http.
const (
	minAcceptDelay = 5 * time.Millisecond
	maxAcceptDelay = time.Second
)

// Server runs one listener. Create it with New, run it with Serve, stop it
// with Shutdown (graceful) or by ending Serve's context (forced).
type Server struct {
	name   string
	events event.Sink
	log    *slog.Logger
	now    func() time.Time

	cfg  atomic.Pointer[config]
	bufs sync.Pool // *[]byte sniff buffers
	pit  tarpit    // refused connections held (Config.RefusedHold)

	mu       sync.Mutex // guards the fields below
	ln       net.Listener
	serving  bool
	closed   bool                      // no new connections: Shutdown or Serve's ctx ended
	quit     chan struct{}             // closed when closed becomes true
	conns    map[*trackedConn]struct{} // open connections (the count)
	workers  int                       // connection goroutines running
	idle     chan struct{}             // closed once closed && no conns && no workers
	idleDone bool                      // idle has been closed
	cancel   context.CancelFunc        // cancels the handlers' context; nil before Serve
}

// New checks c and returns a Server that has not started.
func New(o Options, c Config) (*Server, error) {
	cfg, err := compile(c)
	if err != nil {
		return nil, err
	}
	s := &Server{
		name:   o.Name,
		events: o.Events,
		log:    o.Log,
		now:    o.Now,
		quit:   make(chan struct{}),
		conns:  make(map[*trackedConn]struct{}),
		idle:   make(chan struct{}),
	}
	if s.events == nil {
		s.events = event.Discard
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.cfg.Store(cfg)
	return s, nil
}

// Reconfigure replaces the Config atomically. Connections accepted from now
// on use it; open connections keep theirs. An invalid c is an error and
// leaves the old Config in place. A lower MaxConns refuses new connections
// until enough old ones have closed; it closes none.
func (s *Server) Reconfigure(c Config) error {
	cfg, err := compile(c)
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	return nil
}

// Active returns the number of open connections (accepted and not yet
// closed, including those handed on to net/http or a relay).
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Held returns the number of refused connections held open now
// (Config.RefusedHold).
func (s *Server) Held() int { return s.pit.held() }

// Serve accepts connections on ln until ctx ends, Shutdown is called, or
// Accept fails permanently. It closes ln when it returns.
//
// When ctx ends, Serve closes every connection, cancels the handlers'
// context, waits for its connection goroutines and returns nil. After
// Shutdown it returns nil at once; Shutdown does the draining. A permanent
// Accept error is returned; open connections continue until Shutdown.
// Temporary Accept errors are retried after a pause growing from 5ms to 1s.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ga, raw := newGuardedAcceptor(ln, &s.pit)
	if raw {
		ln = ga // its Close closes what it made of ln too
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	s.ln = ln
	hctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.mu.Unlock()
	defer func() {
		_ = ln.Close()
		s.pit.close()
	}()

	// Wake Accept when ctx ends.
	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		_ = ln.Close()
	})
	defer func() {
		if !stop() {
			<-stopped
		}
	}()

	var delay time.Duration
	for {
		var nc net.Conn
		var err error
		cfg := s.cfg.Load()
		if raw && cfg.Allowed != nil {
			nc, err = ga.accept(cfg.Allowed, cfg.RefusedHold)
		} else {
			cfg = nil // accept asks the guard
			nc, err = ln.Accept()
		}
		if err != nil {
			if ctx.Err() != nil {
				s.stop()
				return nil
			}
			if s.isClosed() {
				return nil
			}
			if isTemporary(err) {
				delay = min(max(2*delay, minAcceptDelay), maxAcceptDelay)
				s.log.Warn("accept failed, retrying", "err", err, "delay", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				case <-s.quit:
					t.Stop()
				}
				continue
			}
			return fmt.Errorf("listen %s: accept: %w", s.name, err)
		}
		delay = 0
		s.accept(hctx, nc, cfg)
	}
}

// isTemporary reports accept errors worth retrying (net/http's rule).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// accept runs the checks that need no byte from the client, then starts the
// connection's goroutine. checked is the Config whose guard has already
// allowed nc (the guarded acceptor's), nil if the guard is still to ask.
func (s *Server) accept(ctx context.Context, nc net.Conn, checked *config) {
	src := addrOf(nc.RemoteAddr())
	cfg := checked
	if cfg == nil {
		cfg = s.cfg.Load()
		if cfg.Allowed != nil && !cfg.Allowed(src) {
			if !s.pit.holdConn(nc, cfg.RefusedHold) {
				_ = nc.Close()
			}
			return
		}
	}
	tc := &trackedConn{Conn: nc, srv: s, src: src}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	if len(s.conns) >= cfg.MaxConns {
		s.mu.Unlock()
		s.emit(src, "", event.ReasonConnLimit, fmt.Sprintf("%d connections open", cfg.MaxConns))
		_ = nc.Close()
		return
	}
	s.conns[tc] = struct{}{}
	s.workers++
	s.mu.Unlock()
	go func() {
		defer s.workerDone()
		s.serveConn(ctx, cfg, tc, src)
	}()
}

// addrOf returns the IP address of a TCP address, unmapped.
func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// untrack releases the slot of a closed connection.
func (s *Server) untrack(c *trackedConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.checkIdleLocked()
	s.mu.Unlock()
}

func (s *Server) workerDone() {
	s.mu.Lock()
	s.workers--
	s.checkIdleLocked()
	s.mu.Unlock()
}

// checkIdleLocked closes idle when the server is closed and nothing is left.
func (s *Server) checkIdleLocked() {
	if s.closed && !s.idleDone && len(s.conns) == 0 && s.workers == 0 {
		s.idleDone = true
		close(s.idle)
	}
}

// closeLocked stops new connections and returns the listener to close.
func (s *Server) closeLocked() net.Listener {
	if !s.closed {
		s.closed = true
		close(s.quit)
	}
	s.checkIdleLocked()
	return s.ln
}

// Shutdown stops accepting, waits until every connection is closed and
// every connection goroutine has returned, and returns nil. If ctx ends
// first it closes all remaining connections, cancels the handlers' context,
// waits for the connection goroutines (handlers must return once their
// context is cancelled or their connection closed) and returns ctx.Err().
// Calling it again, or after Serve's context ended, is harmless.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	ln := s.closeLocked()
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	select {
	case <-s.idle:
		s.cancelHandlers()
		return nil
	case <-ctx.Done():
	}
	s.stop()
	return ctx.Err()
}

// stop closes everything now and waits for the connection goroutines.
func (s *Server) stop() {
	s.mu.Lock()
	ln := s.closeLocked()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	s.cancelHandlers()
	for _, c := range conns {
		_ = c.Close()
	}
	<-s.idle
}

// CloseFrom closes every open connection whose client address is inside p
// (a ban made while they were open) and returns how many it closed. Their
// handlers see the connection fail and return; no event is emitted.
func (s *Server) CloseFrom(p netip.Prefix) int {
	s.mu.Lock()
	var victims []*trackedConn
	for c := range s.conns {
		if p.Contains(c.src) {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		_ = c.Close()
	}
	return len(victims)
}

func (s *Server) cancelHandlers() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// emit sends a RejectedByGateway event.
func (s *Server) emit(src netip.Addr, proto, reason, detail string) {
	s.events.Emit(event.Event{
		Time:     s.now(),
		Kind:     event.RejectedByGateway,
		Source:   src,
		Listener: s.name,
		Proto:    proto,
		Reason:   reason,
		Detail:   detail,
	})
}
