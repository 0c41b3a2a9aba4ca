package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/store"
	"github.com/pbxgate/pbxgate/internal/turn"
)

// Control is what the admin API needs from the fraud engine (*fraud.Engine
// implements it). Errors wrapping fraud.ErrInvalid are answered 400, errors
// wrapping fraud.ErrConfigEntry 409, others 500.
type Control interface {
	// Ban blacklists p for d (0: forever).
	Ban(ctx context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error)
	// Unban removes p's blacklist entry and returns it; false if none.
	Unban(ctx context.Context, p netip.Prefix) (store.Entry, bool, error)
	// Allow whitelists p for d (0: forever) and lifts bans inside p.
	Allow(ctx context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error)
	// Disallow removes p's whitelist entry and returns it; false if none.
	Disallow(ctx context.Context, p netip.Prefix) (store.Entry, bool, error)
	// Entries lists l's entries in force.
	Entries(ctx context.Context, l store.List) ([]store.Entry, error)
	// Inspect says what the engine knows about a.
	Inspect(ctx context.Context, a netip.Addr) (fraud.SourceInfo, error)
	// Stats returns the engine's counters.
	Stats() fraud.Stats
}

// TURN is what the admin API needs from the TURN server (*turn.Server
// implements it).
type TURN interface {
	// Allocations lists the active allocations, oldest first.
	Allocations() []turn.Allocation
	// End ends allocation id; false if there is none.
	End(id uint64) (turn.Allocation, bool)
}

// Config is what the admin server is built from.
type Config struct {
	// Token checks the bearer token of /api/ requests on TCP listeners.
	// Required to serve a TCP listener; unused on the unix socket.
	Token TokenVerifier
	// Store keeps the token's hash. POST /api/v1/token/rotate writes a new
	// one there and, when Token is a *HashVerifier, makes it the accepted
	// token at once. nil: rotation is answered 501.
	Store store.Store
	// Ready says whether the gateway is ready for traffic (nil error). nil:
	// always ready.
	Ready func() error
	// Registry is served at /metrics. nil: /metrics is answered 404.
	Registry *prometheus.Registry
	// Events is the recent event stream listed and followed by
	// /api/v1/events. Required.
	Events *event.Ring
	// Sink receives an event for every request refused for a missing or
	// wrong token. nil: event.Discard.
	Sink event.Sink
	// Control is the fraud engine. Required.
	Control Control
	// TURN is the TURN server. nil: the turn endpoints answer 404.
	TURN TURN
	// Snapshot writes the state store's snapshot for GET /api/v1/state.
	// nil: answered 501.
	Snapshot func(ctx context.Context, w io.Writer) error
	// Log receives the server's own messages and an audit line for every
	// change made through the API. nil: discarded.
	Log *slog.Logger
	// Now is the clock (the events query's relative since). nil: time.Now.
	Now func() time.Time
}

// Limits of requests.
const (
	MaxBodyBytes   = 1 << 20
	MaxHeaderBytes = 64 << 10
)

// timeouts of the HTTP server; tests shorten them.
type timeouts struct {
	readHeader, read, write, idle time.Duration
	// streamWrite bounds each write of a stream (events follow, state), so
	// a client that stops reading is dropped while one that reads slowly
	// is not.
	streamWrite time.Duration
	heartbeat   time.Duration // newline sent on an idle events stream
	drain       time.Duration // how long Serve drains when its ctx ends
}

var defaultTimeouts = timeouts{
	readHeader:  10 * time.Second,
	read:        30 * time.Second,
	write:       30 * time.Second,
	idle:        2 * time.Minute,
	streamWrite: 30 * time.Second,
	heartbeat:   15 * time.Second,
	drain:       5 * time.Second,
}

// Server is the admin API. It serves any number of listeners at once.
type Server struct {
	cfg     Config
	log     *slog.Logger
	sink    event.Sink
	now     func() time.Time
	metrics http.Handler
	t       timeouts
	// trusted says whether a unix socket peer with that uid may use the
	// API: root and the uid pbxgate runs as.
	trusted func(uid int) bool

	mu      sync.Mutex // guards the fields below
	servers map[*http.Server]struct{}
	closed  bool

	done     chan struct{} // closed by Shutdown and Close: ends streams
	doneOnce sync.Once
}

// New checks cfg and returns a server. It opens nothing.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Control == nil {
		errs = append(errs, errors.New("admin: Config.Control is required"))
	}
	if cfg.Events == nil {
		errs = append(errs, errors.New("admin: Config.Events is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Log,
		sink:    cfg.Sink,
		now:     cfg.Now,
		t:       defaultTimeouts,
		servers: make(map[*http.Server]struct{}),
		done:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "admin")
	if s.sink == nil {
		s.sink = event.Discard
	}
	if s.now == nil {
		s.now = time.Now
	}
	euid := os.Geteuid()
	s.trusted = func(uid int) bool { return uid == 0 || uid == euid }
	if cfg.Registry != nil {
		s.metrics = promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ErrorHandling: promhttp.ContinueOnError,
		})
	}
	return s, nil
}

// Serve answers requests on ln until ctx ends, Shutdown or Close is called,
// or Accept fails; it closes ln when it returns. A *net.UnixListener is
// served as the trusted admin socket: no token is asked, but a peer whose
// uid is neither root nor pbxgate's own is refused (403), and the
// socket-only endpoints (token rotation, state) are available. Any other
// listener needs Config.Token, and /api/ requests on it need the token.
//
// When ctx ends, Serve stops accepting, ends event streams, waits a few
// seconds for requests in flight, closes what remains and returns nil.
// After Shutdown or Close it returns nil (ErrClosed if they came first).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	_, socket := ln.(*net.UnixListener)
	if !socket && s.cfg.Token == nil {
		_ = ln.Close()
		return fmt.Errorf("admin: serving TCP listener %s needs Config.Token", ln.Addr())
	}
	hs := &http.Server{
		Handler:           s.handler(socket),
		ReadHeaderTimeout: s.t.readHeader,
		ReadTimeout:       s.t.read,
		WriteTimeout:      s.t.write,
		IdleTimeout:       s.t.idle,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if socket {
		hs.ConnContext = peerContext
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrClosed
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.servers, hs)
		s.mu.Unlock()
	}()

	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(stopped)
		// Request contexts derive from ctx, so streams end by themselves;
		// give the other requests a moment to finish.
		dctx, cancel := context.WithTimeout(context.Background(), s.t.drain)
		defer cancel()
		if err := hs.Shutdown(dctx); err != nil {
			_ = hs.Close()
		}
	})
	err := hs.Serve(ln)
	if !stop() {
		<-stopped
	}
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	// Accept failed: the connections of this listener are not reachable
	// from Shutdown any more, so end them here.
	_ = hs.Close()
	return fmt.Errorf("admin: serve %s: %w", ln.Addr(), err)
}

// Shutdown stops every listener, ends event streams and waits for the
// requests in flight until ctx ends, then closes what remains. Idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	servers := s.stop()
	var errs []error
	for _, hs := range servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err, hs.Close())
		}
	}
	return errors.Join(errs...)
}

// Close stops every listener and closes every connection at once.
// Idempotent.
func (s *Server) Close() error {
	var errs []error
	for _, hs := range s.stop() {
		errs = append(errs, hs.Close())
	}
	return errors.Join(errs...)
}

func (s *Server) stop() []*http.Server {
	s.doneOnce.Do(func() { close(s.done) })
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	out := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		out = append(out, hs)
	}
	return out
}
