// Package gateway builds the running pbxgate from a configuration: it opens
// the listeners, wires each accepted protocol to its handler (HTTP reverse
// proxy, LDAP proxy, plain TCP forwarding), and swaps in a new configuration
// on reload without dropping connections that did not change.
//
// It owns no protocol logic of its own; that lives in httpproxy, ldap, relay
// and listen. It does not parse configuration files either (see config).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/httpproxy"
	"github.com/pbxgate/pbxgate/internal/listen"
	"github.com/pbxgate/pbxgate/internal/sipedge"
	"github.com/pbxgate/pbxgate/internal/turn"
	"github.com/pbxgate/pbxgate/internal/udprelay"
)

// Options are the parts of a gateway that do not come from the configuration
// file.
type Options struct {
	// Log receives the gateway's logs. Default slog.Default().
	Log *slog.Logger
	// Events receives every event in addition to the log. Default none.
	Events event.Sink
	// Version is the release reported by the pbxgate_build_info metric.
	// Default: what the module's build information says.
	Version string
}

// Gateway is a running pbxgate.
type Gateway struct {
	base   *slog.Logger // as handed in; components add their own attributes
	log    *slog.Logger
	events event.Sink
	sec    *security
	sip    *sipedge.Policy // outlives reloads: flood blocks and calls are kept
	turn   *turn.Server    // nil when no listener carried turn at start; outlives reloads
	// started0 is the configuration New was given: what the TURN server's
	// start-only settings came from.
	started0 *config.Config

	mu        sync.Mutex // guards the fields below
	cfg       *config.Config
	rt        *runtime
	listeners map[string]*liveListener
	started   bool
	closed    bool
	serveCtx  context.Context
	wg        sync.WaitGroup // Serve goroutines and drains of removed listeners
}

// liveListener is one open socket and the servers behind it. It outlives
// reloads as long as its address does not change.
type liveListener struct {
	name      string
	addr      string
	transport string
	sec       *security
	// TCP listeners.
	ln   net.Listener
	srv  *listen.Server
	http *httpproxy.Server
	hh   *httpproxy.Swappable
	mux  atomic.Pointer[sipMux] // what HTTP requests go to: hh and/or SIP over WebSocket
	// UDP listeners.
	pc    net.PacketConn
	proto string          // what a udp listener carries: sip or turn
	relay *udprelay.Relay // sip
	turn  *turn.Server    // turn
	// turnStop stops the TURN service of a udp listener carrying turn.
	turnStop io.Closer
}

// ServeHTTP passes a request to the listener's current mux.
func (l *liveListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mux.Load().ServeHTTP(w, r)
}

// httpOrNil returns h when on, else nil (not a typed nil).
func httpOrNil(on bool, h *httpproxy.Swappable) http.Handler {
	if !on {
		return nil
	}
	return h
}

// sameSocket reports whether l is lc's socket.
func (l *liveListener) sameSocket(lc config.Listener) bool {
	if l.addr != lc.Address || l.transport != lc.Transport {
		return false
	}
	return l.transport != config.TransportUDP || l.proto == lc.Protocols[0]
}

// localAddr is the bound address.
func (l *liveListener) localAddr() net.Addr {
	if l.pc != nil {
		return l.pc.LocalAddr()
	}
	return l.ln.Addr()
}

// closeSocket closes a socket opened but never served.
func (l *liveListener) closeSocket() {
	if l.pc != nil {
		l.pc.Close()
		return
	}
	l.ln.Close()
}

// New builds the runtime for cfg (certificates loaded, handlers built) but
// opens no socket. It returns every problem the configuration has beyond
// what config.Validate can know (unreadable certificates, CA files).
func New(cfg *config.Config, o Options) (*Gateway, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	g := &Gateway{
		base:      o.Log,
		log:       o.Log.With("component", "gateway"),
		listeners: make(map[string]*liveListener),
	}
	g.sec = newSecurity(cfg)
	if o.Version != "" {
		g.sec.metrics.SetBuildInfo(o.Version)
	}
	// The ring comes before the engine: a ban quotes the event that tipped it.
	sinks := event.Fanout{event.LogSink{Log: o.Log.With("component", "events")}, g.sec.ring, g.sec.metrics, g.sec}
	if o.Events != nil {
		sinks = append(sinks, o.Events)
	}
	g.events = sinks
	sp, err := sipPolicy(cfg, g)
	if err != nil {
		return nil, err
	}
	g.sip = sp
	if g.turn, err = newTURN(cfg, g); err != nil {
		return nil, err
	}
	g.started0 = cfg
	rt, err := g.build(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.sip.Reconfigure(rt.sip); err != nil {
		return nil, err
	}
	g.cfg, g.rt = cfg, rt
	return g, nil
}

// Start opens every listener and starts serving. It returns once the sockets
// are open; serving goes on until Shutdown is called, which drains
// connections. ctx only carries values to the servers: cancelling it does
// not stop them (that would cut connections without draining).
func (g *Gateway) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started || g.closed {
		return errors.New("gateway: already started")
	}
	if err := g.startSecurity(ctx, g.cfg); err != nil {
		return err
	}
	g.started = true
	g.serveCtx = ctx
	if g.turn != nil {
		g.sec.track(g.turn)
	}
	opened, err := g.openLocked(ctx, g.rt, g.cfg.Listeners)
	if err != nil {
		_ = g.stopSecurity(ctx)
		g.started = false
		return err
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		_ = g.sip.Run(context.WithoutCancel(ctx)) // releases lost calls until Shutdown
	}()
	for _, l := range opened {
		g.serveLocked(l)
	}
	g.rt.warn(g.log)
	return nil
}

// Addr returns the bound address of the named listener, or nil.
func (g *Gateway) Addr(name string) net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if l, ok := g.listeners[name]; ok {
		return l.localAddr()
	}
	return nil
}

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cfg
}

// Reload replaces the configuration. The new runtime is built, and new
// sockets opened, before anything of the old one is touched: on any error
// the old configuration keeps running unchanged. Listeners whose name and
// address are unchanged keep their socket and their connections.
func (g *Gateway) Reload(cfg *config.Config) error {
	rt, err := g.build(cfg)
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		rt.close()
		return errors.New("reload: gateway is shut down")
	}
	var fresh []config.Listener
	for _, lc := range cfg.Listeners {
		if old, ok := g.listeners[lc.Name]; !ok || !old.sameSocket(lc) {
			fresh = append(fresh, lc)
		}
	}
	var opened []*liveListener
	if g.started {
		opened, err = g.openLocked(g.serveCtx, rt, fresh)
		if err != nil {
			rt.close()
			return fmt.Errorf("reload: %w", err)
		}
	}
	// From here on nothing can fail: swap.
	for _, lc := range cfg.Listeners {
		if l, ok := g.listeners[lc.Name]; ok && l.sameSocket(lc) {
			if err := g.reconfigureLocked(l, rt, lc); err != nil {
				// build() already produced this listener's tables, so this
				// cannot happen short of a bug; keep serving the old tables.
				g.log.Error("reload: listener kept its old configuration", "listener", l.name, "err", err)
			}
		}
	}
	for name, l := range g.listeners {
		if lc, ok := cfg.Listener(name); !ok || !l.sameSocket(*lc) {
			delete(g.listeners, name)
			g.wg.Add(1) // Shutdown waits for the drain too
			go func() {
				defer g.wg.Done()
				g.drain(l)
			}()
		}
	}
	for _, l := range opened {
		g.serveLocked(l)
	}
	g.reloadSecurityLocked(cfg)
	if g.turn != nil {
		if err := g.turn.Reconfigure(rt.turn); err != nil {
			g.log.Error("reload: turn settings kept as they were", "err", err) // build() checked them
		}
		if keys := turnRestartNeeded(g.started0, cfg); len(keys) > 0 {
			g.log.Warn("reload: these turn settings take effect at restart only", "keys", keys)
		}
	}
	if err := g.sip.Reconfigure(rt.sip); err != nil {
		// build() checked the tables; this is a bug, keep the old ones.
		g.log.Error("reload: sip policy kept as it was", "err", err)
	}
	old := g.rt
	g.cfg, g.rt = cfg, rt
	old.close()
	rt.warn(g.log)
	g.log.Info("configuration reloaded", "listeners", len(cfg.Listeners), "services", len(cfg.Services))
	return nil
}

// drain stops a listener removed by a reload, giving its connections the
// shutdown timeout to finish.
func (g *Gateway) drain(l *liveListener) {
	g.mu.Lock()
	timeout := g.cfg.Timeouts.Shutdown.D()
	g.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.shutdown(ctx); err != nil {
		g.log.Warn("listener removed by reload did not drain cleanly", "listener", l.name, "err", err)
	}
}

// Shutdown stops accepting, waits for connections until ctx is done, then
// closes what is left. It is safe to call more than once.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	ls := make([]*liveListener, 0, len(g.listeners))
	for _, l := range g.listeners {
		ls = append(ls, l)
	}
	g.listeners = map[string]*liveListener{}
	rt, started := g.rt, g.started
	g.mu.Unlock()

	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.shutdown(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("listener %s: %w", l.name, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	_ = g.sip.Close()
	if g.turn != nil {
		if err := g.turn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.wg.Wait()
	rt.close()
	if started {
		errs = append(errs, g.stopSecurity(ctx))
	}
	return errors.Join(errs...)
}

func (l *liveListener) shutdown(ctx context.Context) error {
	if l.turn != nil {
		if l.turnStop == nil {
			l.pc.Close() // never served
			return nil
		}
		return l.turnStop.Close()
	}
	if l.relay != nil {
		defer l.sec.untrack(l.relay)
		return l.relay.Shutdown(ctx)
	}
	defer l.sec.untrack(l.srv)
	var errs []error
	if err := l.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, err)
	}
	if err := l.http.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, err)
	}
	if old := l.hh.Swap(nil); old != nil {
		old.Close()
	}
	return errors.Join(errs...)
}

// openLocked opens the sockets of lcs and builds their servers from the
// current runtime; on error everything opened here is closed again.
func (g *Gateway) openLocked(ctx context.Context, rt *runtime, lcs []config.Listener) ([]*liveListener, error) {
	var opened []*liveListener
	for _, lc := range lcs {
		l, err := g.newListener(ctx, rt, lc)
		if err != nil {
			for _, o := range opened {
				o.closeSocket()
			}
			return nil, err
		}
		opened = append(opened, l)
	}
	return opened, nil
}

func (g *Gateway) serveLocked(l *liveListener) {
	g.listeners[l.name] = l
	if l.turn != nil {
		g.serveTURNLocked(l)
		return
	}
	if l.relay != nil {
		g.serveUDPLocked(l)
		return
	}
	g.sec.track(l.srv)
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		// Cancelling Serve's context is a hard stop; the drain on shutdown
		// goes through Shutdown instead, so Serve must not see the cancel.
		if err := l.srv.Serve(context.WithoutCancel(g.serveCtx), l.ln); err != nil {
			g.log.Error("listener stopped", "listener", l.name, "err", err)
		}
	}()
	g.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
}

// Check builds the runtime of cfg the way New does, without writing
// anything or opening sockets, and returns every problem found (unreadable
// certificates and CA files, bad path patterns). It returns the configuration
// audit warnings too.
func Check(cfg *config.Config) (warnings []string, err error) {
	g := &Gateway{base: slog.New(slog.DiscardHandler), events: event.Discard}
	g.log = g.base
	sp, err := sipPolicy(cfg, g)
	if err != nil {
		return nil, err
	}
	g.sip = sp
	if g.turn, err = newTURN(cfg, g); err != nil {
		return nil, err
	}
	rt, err := g.buildMode(cfg, true)
	if err != nil {
		return nil, err
	}
	rt.close()
	return rt.warnings, nil
}
