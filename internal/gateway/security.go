package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/pbxgate/pbxgate/internal/admin"
	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
	"github.com/pbxgate/pbxgate/internal/idle"
	"github.com/pbxgate/pbxgate/internal/listen"
	"github.com/pbxgate/pbxgate/internal/store"
)

// security is the part of the gateway that decides who may connect: the
// state store, the fraud engine fed by the event stream, and the admin API
// that lists and changes its decisions. It exists from Start to Shutdown;
// before Start (and in Check) the guard allows everyone and events only go
// to the log, the ring and the metrics.
type security struct {
	ring    *event.Ring
	reg     *prometheus.Registry
	metrics *admin.Metrics
	engine  atomic.Pointer[fraud.Engine]

	// Set by start, read by stop; guarded by the Gateway's mu.
	st        store.Store
	adminSrv  *admin.Server
	runCancel context.CancelFunc
	runDone   chan struct{}
	adminWG   sync.WaitGroup
	// fixed holds the settings that need a restart to change.
	fixed struct{ adminAddr, adminSocket, storePath, recentEvents string }
	kbl   kernelBLState // the kernel blacklist (firewall.kernel_blacklist)

	srvMu   sync.Mutex // guards servers
	servers map[closer]struct{}
	closing sync.WaitGroup // closeFromLater's goroutines

	// The suspect gate: new connections of suspects share suspects' rate
	// and wait at most gateWait for it.
	suspects       atomic.Pointer[rate.Limiter]
	gateWait       atomic.Int64 // time.Duration
	suspectDelayed atomic.Uint64
	suspectDropped atomic.Uint64
	// The unproven gate: new connections of sources nobody logged in
	// from (suspects too, after their rate) take one of unproven's slots
	// until their first exchange is over, and wait at most gateWait for
	// one.
	unproven        atomic.Pointer[slots]
	unprovenDelayed atomic.Uint64
	unprovenDropped atomic.Uint64
	// With its slot, an unproven connection waits for an idle moment of
	// the gateway (idle.Gate) before its first exchange is served, so
	// strangers' work runs in the gaps the rest leaves. Nil until start.
	idle     atomic.Pointer[idle.Gate]
	idleDone chan struct{} // closed when the gate's Run returns
}

// unprovenHold is the longest an unproven connection keeps its slot when
// its first exchange is not over by then: a client that stalls mid-request
// or a TLS handshake waiting on a slow link then stops keeping others out.
// The slot bounds work in progress, and this is well above the gateway's
// own work for a first request (about 0.5 ms). A variable for tests.
var unprovenHold = 50 * time.Millisecond

// slots is a fixed number of places; a reload that changes the number
// makes new slots, and connections holding an old one give it back there.
type slots struct {
	ch      chan struct{}
	release func() // frees one place; made once, so taking one does not allocate
}

func newSlots(n int) *slots {
	s := &slots{ch: make(chan struct{}, n)}
	s.release = func() { <-s.ch }
	return s
}

// tryTake takes a free place if there is one.
func (s *slots) tryTake() bool {
	select {
	case s.ch <- struct{}{}:
		return true
	default:
		return false
	}
}

// take waits for a place until ctx ends.
func (s *slots) take(ctx context.Context) bool {
	select {
	case s.ch <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func newSecurity(cfg *config.Config) *security {
	s := &security{
		ring:    event.NewRing(cfg.Fraud.RecentEvents),
		reg:     prometheus.NewRegistry(),
		servers: make(map[closer]struct{}),
	}
	s.metrics = admin.NewMetrics(s.reg, s.stats)
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	s.reg.MustRegister(
		counter("pbxgate_suspect_connections_delayed_total",
			"New connections of suspect sources that waited for their turn (fraud.suspect_rate).", &s.suspectDelayed),
		counter("pbxgate_suspect_connections_dropped_total",
			"New connections of suspect sources closed because their turn did not come within timeouts.first_bytes.", &s.suspectDropped),
		counter("pbxgate_unproven_connections_delayed_total",
			"New connections of unproven sources that waited for a slot (fraud.unproven_concurrency).", &s.unprovenDelayed),
		counter("pbxgate_unproven_connections_dropped_total",
			"New connections of unproven sources closed because no slot (or no idle moment of the gateway) came within timeouts.first_bytes.", &s.unprovenDropped),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pbxgate_refused_connections_held",
			Help: "TCP connections of blacklisted sources held open, unanswered, until fraud.refused_hold ends.",
		}, func() float64 { return float64(s.held()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pbxgate_unproven_connections_in_first_exchange",
			Help: "New connections of unproven sources holding a slot now: admitted, first request not yet handed to the backend or answered.",
		}, func() float64 {
			if u := s.unproven.Load(); u != nil {
				return float64(len(u.ch))
			}
			return 0
		}),
	)
	s.configure(cfg)
	return s
}

// configure applies the settings that follow reloads.
func (s *security) configure(cfg *config.Config) {
	s.gateWait.Store(int64(cfg.Timeouts.FirstBytes.D()))
	r := cfg.Fraud.SuspectRate
	if old := s.suspects.Load(); old == nil || old.Limit() != rate.Limit(r) {
		s.suspects.Store(rate.NewLimiter(rate.Limit(r), r))
	}
	n := cfg.Fraud.UnprovenConcurrency
	if old := s.unproven.Load(); old == nil || cap(old.ch) != n {
		s.unproven.Store(newSlots(n))
	}
}

// admit is the gate every listener asks once a connection's first bytes
// are there. Proven sources (a user logged in from there, whitelisted)
// pass at once. The others take one of the unproven slots until their
// first exchange is over (release), suspects after waiting for the
// suspects' rate; then they wait for an idle moment of the gateway. All
// the waits together last at most timeouts.first_bytes.
func (s *security) admit(ctx context.Context, src netip.Addr) (release func(), ok bool) {
	e := s.engine.Load()
	if e == nil {
		return nil, true
	}
	st := e.Standing(src)
	if st == fraud.Proven {
		return nil, true
	}
	lim, u := s.suspects.Load(), s.unproven.Load()
	// The waits together last at most first_bytes.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(s.gateWait.Load()))
	defer cancel()
	if st == fraud.Suspect && !lim.Allow() {
		s.suspectDelayed.Add(1)
		if err := lim.Wait(ctx); err != nil {
			s.suspectDropped.Add(1)
			return nil, false
		}
	}
	if !u.tryTake() {
		s.unprovenDelayed.Add(1)
		if !u.take(ctx) {
			s.unprovenDropped.Add(1)
			return nil, false
		}
	}
	if g := s.idle.Load(); g != nil && !g.Wait(ctx) {
		u.release()
		s.unprovenDropped.Add(1)
		return nil, false
	}
	return u.release, true
}

// allowed is the guard every listener asks at accept.
func (s *security) allowed(a netip.Addr) bool {
	e := s.engine.Load()
	return e == nil || e.Allowed(a)
}

// Emit hands an event to the fraud engine once it runs.
func (s *security) Emit(ev event.Event) {
	if e := s.engine.Load(); e != nil {
		e.Emit(ev)
	}
}

func (s *security) stats() fraud.Stats {
	if e := s.engine.Load(); e != nil {
		return e.Stats()
	}
	return fraud.Stats{}
}

// closer is a proxy server (TCP listener, UDP relay) whose connections or
// flows a ban closes.
type closer interface{ CloseFrom(netip.Prefix) int }

// track and untrack keep the set of proxy servers whose connections a ban
// closes.
func (s *security) track(srv closer) {
	s.srvMu.Lock()
	s.servers[srv] = struct{}{}
	s.srvMu.Unlock()
}

func (s *security) untrack(srv closer) {
	s.srvMu.Lock()
	delete(s.servers, srv)
	s.srvMu.Unlock()
}

// held sums the refused connections the tracked TCP servers hold now.
func (s *security) held() int {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	n := 0
	for srv := range s.servers {
		if h, ok := srv.(interface{ Held() int }); ok {
			n += h.Held()
		}
	}
	return n
}

// closeFromLater closes the open connections of a source just banned from
// a goroutine of its own. An automatic ban is made by the handler of the
// request that tipped it: closing that connection under it can cut its
// answer and, for HTTP, loses the backend connection the answer is being
// read from (bench/fraud.sh measured one new backend connection per ban in
// a wave of bans). The handler goes on to finish its answer, and the
// connection is closed as soon as the goroutine runs (with GOMAXPROCS=1,
// once the handler waits; with more, possibly at once, as before).
func (s *security) closeFromLater(p netip.Prefix, log *slog.Logger) {
	s.closing.Go(func() {
		if n := s.closeFrom(p); n > 0 {
			log.Info("closed the banned source's connections", "src", p.String(), "connections", n)
		}
	})
}

// closeFrom closes the open connections of a source just banned.
func (s *security) closeFrom(p netip.Prefix) int {
	s.srvMu.Lock()
	srvs := make([]closer, 0, len(s.servers))
	for srv := range s.servers {
		srvs = append(srvs, srv)
	}
	s.srvMu.Unlock()
	n := 0
	for _, srv := range srvs {
		n += srv.CloseFrom(p)
	}
	return n
}

// fraudConfig turns the configuration's fraud section into the engine's
// policy. cfg has been validated.
func fraudConfig(cfg *config.Config) fraud.Config {
	f := cfg.Fraud
	reasons := make(map[string]int, len(f.Weights.Reasons))
	for r, w := range f.Weights.Reasons {
		reasons[r] = w
	}
	wl := config.Networks(f.Whitelist)
	return fraud.Config{
		Enabled:        f.Enabled == nil || *f.Enabled,
		Threshold:      f.SuspiciousPerMinute,
		BanFor:         f.BlacklistFor.D(),
		BanMax:         f.BlacklistMax.D(),
		RecidiveWindow: f.RecidiveWindow.D(),
		KindWeights: map[event.Kind]int{
			event.RejectedByGateway:  derefOr(f.Weights.RejectedByGateway, config.DefaultWeightGateway),
			event.RejectedByService:  derefOr(f.Weights.RejectedByService, config.DefaultWeightService),
			event.BackendUnreachable: derefOr(f.Weights.BackendUnreachable, config.DefaultWeightUnreachable),
		},
		ReasonWeights: reasons,
		Whitelist:     wl,
		MaxSources:    f.MaxSources,
		NATWindow:     f.NAT.SuccessWindow.D(),
		NATMaxFactor:  f.NAT.MaxFactor,
	}
}

func derefOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// startSecurity opens the store, makes the admin token on first start, loads and
// runs the fraud engine and opens the admin API. On error everything
// opened is closed again.
func (g *Gateway) startSecurity(ctx context.Context, cfg *config.Config) (err error) {
	s := g.sec
	st, err := store.OpenBolt(cfg.Store.Path, store.BoltOptions{})
	if err != nil {
		return fmt.Errorf("state store: %w", err)
	}
	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()
	cleanup = append(cleanup, func() { _ = st.Close() })

	// Before the admin token is made and shown: a gateway that cannot enforce
	// bans in the kernel does not start.
	kbl, err := g.newKernelBL(cfg)
	if err != nil {
		return err
	}
	cleanup = append(cleanup, kbl.stop)

	token, created, err := admin.EnsureToken(ctx, st)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if created && cfg.Admin.Address != config.Off {
		g.log.Warn("admin API token created; it is shown only this once, keep it: "+token,
			"header", "Authorization: Bearer <token>", "rotate", "pbxgate token rotate")
	}
	verifier, err := admin.LoadVerifier(ctx, st)
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}

	eng, err := fraud.New(fraudConfig(cfg), st, fraud.Options{
		Log:    g.base,
		Recent: s.ring.Evidence,
		OnBan: func(p netip.Prefix) {
			kbl.onBan(p)
			s.closeFromLater(p, g.log)
		},
		// An operator's unban or allow also ends SIP flood blocks.
		OnLift: func(p netip.Prefix) {
			kbl.onLift(p)
			if n := g.sip.Forget(p); n > 0 {
				g.log.Info("lifted the SIP flood block", "src", p.String(), "sources", n)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("fraud: %w", err)
	}
	if err := eng.Load(ctx); err != nil {
		_ = eng.Close()
		return fmt.Errorf("fraud: loading state: %w", err)
	}
	gate, err := idle.New()
	if err != nil {
		return fmt.Errorf("unproven gate: %w", err)
	}
	s.idleDone = make(chan struct{})
	go func() {
		defer close(s.idleDone)
		_ = gate.Run(context.Background()) // until Close
	}()
	s.idle.Store(gate)
	cleanup = append(cleanup, s.stopIdle)

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.runDone = make(chan struct{})
	go func() {
		defer close(s.runDone)
		if err := eng.Run(runCtx); err != nil {
			g.log.Error("fraud engine stopped", "err", err)
		}
	}()
	s.runCancel = cancel
	s.engine.Store(eng)
	cleanup = append(cleanup, func() {
		s.engine.Store(nil)
		cancel()
		<-s.runDone
		_ = eng.Close()
	})
	if err := kbl.start(ctx); err != nil {
		return err
	}
	s.kbl.run = kbl

	var turnAPI admin.TURN
	if g.turn != nil {
		turnAPI = g.turn
	}
	srv, err := admin.New(admin.Config{
		TURN:     turnAPI,
		Token:    verifier,
		Store:    st,
		Ready:    g.ready,
		Registry: s.reg,
		Events:   s.ring,
		Sink:     g.events,
		Control:  eng,
		Snapshot: st.Snapshot,
		Log:      g.base,
	})
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	var lns []net.Listener
	closeLns := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	if cfg.Admin.Address != config.Off {
		ln, err := listen.Listen(ctx, "tcp", cfg.Admin.Address)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		lns = append(lns, listen.Guard(ln, s.allowed))
	}
	if cfg.Admin.Socket != config.Off {
		ln, err := admin.ListenUnix(cfg.Admin.Socket)
		if err != nil {
			closeLns()
			return fmt.Errorf("admin socket: %w", err)
		}
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		s.adminWG.Add(1)
		go func() {
			defer s.adminWG.Done()
			if err := srv.Serve(context.WithoutCancel(ctx), ln); err != nil && !errors.Is(err, admin.ErrClosed) {
				g.log.Error("admin API stopped", "addr", ln.Addr().String(), "err", err)
			}
		}()
		g.log.Info("admin API listening", "addr", ln.Addr().String())
	}
	s.st, s.adminSrv = st, srv
	s.fixed.adminAddr, s.fixed.adminSocket, s.fixed.storePath = cfg.Admin.Address, cfg.Admin.Socket, cfg.Store.Path
	s.fixed.recentEvents = strconv.Itoa(cfg.Fraud.RecentEvents)
	return nil
}

// reloadSecurity applies a new configuration's fraud policy. The admin
// listeners and the store stay as they were started.
func (g *Gateway) reloadSecurityLocked(cfg *config.Config) {
	s := g.sec
	s.configure(cfg)
	g.reloadKernelBLLocked(cfg)
	if e := s.engine.Load(); e != nil {
		if err := e.Reconfigure(fraudConfig(cfg)); err != nil {
			// build() checked the policy; this is a bug, keep the old one.
			g.log.Error("reload: fraud policy kept as it was", "err", err)
		}
	}
	if !g.started {
		return
	}
	for _, c := range []struct{ key, was, now string }{
		{"admin.address", s.fixed.adminAddr, cfg.Admin.Address},
		{"admin.socket", s.fixed.adminSocket, cfg.Admin.Socket},
		{"store.path", s.fixed.storePath, cfg.Store.Path},
		{"fraud.recent_events", s.fixed.recentEvents, strconv.Itoa(cfg.Fraud.RecentEvents)},
	} {
		if c.was != c.now {
			g.log.Warn("reload: "+c.key+" changes at the next restart", "running", c.was, "configured", c.now)
		}
	}
}

// stopSecurity closes the admin API, the fraud engine and the store.
func (g *Gateway) stopSecurity(ctx context.Context) error {
	s := g.sec
	var errs []error
	if s.adminSrv != nil {
		if err := s.adminSrv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			errs = append(errs, fmt.Errorf("admin: %w", err))
		}
		_ = s.adminSrv.Close()
		s.adminWG.Wait()
	}
	s.kbl.run.stop() // leaves the bans in the kernel
	s.kbl.run = nil
	if e := s.engine.Swap(nil); e != nil {
		s.runCancel()
		<-s.runDone
		errs = append(errs, e.Close())
	}
	s.closing.Wait() // no bans from here on
	s.stopIdle()

	if s.st != nil {
		errs = append(errs, s.st.Close())
	}
	_ = s.ring.Close()
	return errors.Join(errs...)
}

// stopIdle closes the unproven gate's idle gate (its waiters are turned
// away) and waits for its goroutine. Idempotent.
func (s *security) stopIdle() {
	if g := s.idle.Swap(nil); g != nil {
		_ = g.Close()
		<-s.idleDone
	}
}

// ready answers /readyz: serving and not shutting down.
func (g *Gateway) ready() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.closed:
		return errors.New("shutting down")
	case !g.started:
		return errors.New("starting")
	}
	return nil
}
