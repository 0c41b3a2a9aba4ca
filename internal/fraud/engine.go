package fraud

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

// Options are the engine's collaborators. Every field may be left zero.
type Options struct {
	// Log receives the engine's lines ("source banned", "source
	// unbanned", store failures). Nil means slog.Default(). The engine adds
	// "component", "fraud".
	Log *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// Recent returns up to max of the latest events from src at or after
	// since, oldest first (the gateway passes an event.Ring lookup). They
	// are quoted as a ban's evidence and summarised in its reason. Nil
	// means bans carry no evidence.
	Recent func(src netip.Addr, since time.Time, max int) []event.Event
	// OnBan is called once a ban is in force: for manual bans after they
	// are written to the store, for automatic bans at once, before their
	// store write (which the ban writer does; Flush waits for it), so the
	// gateway can close the connections already open from inside p. It is also called for bans
	// another node announces through store.Watch. It runs on the goroutine
	// that made the ban (for automatic bans, the one that called Emit) and
	// must not call back into the engine's write methods. Nil means nothing
	// is done.
	OnBan func(p netip.Prefix)
	// OnLift is called when an operator lifts bans: after Unban of p (an
	// entry was found or not) and after Allow of p, so that the gateway
	// can forget what else it holds against the sources inside p (a SIP
	// flood block). It must not call back into the engine's write
	// methods. Nil means nothing is done.
	OnLift func(p netip.Prefix)
}

// banWriteTimeout bounds the store write of one batch of automatic bans,
// so a stuck store cannot hold the ban writer forever. Generous: the writes are off the
// request path, and a host under a flood may give the writers little CPU.
const banWriteTimeout = time.Minute

// Engine is the fraud engine. Its methods are safe for concurrent use.
type Engine struct {
	log    *slog.Logger
	clock  func() time.Time
	recent func(netip.Addr, time.Time, int) []event.Event
	onBan  func(netip.Prefix)
	onLift func(netip.Prefix)
	st     store.Store

	pol    atomic.Pointer[policy]
	seed   uint64       // address hashing (shards, counter lanes)
	userHS maphash.Seed // user hashing (known users)

	guard  *guard
	wl     *whitelist
	shards []*cshard

	// persistMu serialises the "memory + store" sequences of entry changes
	// (unban, allow, disallow, expiry: write-locked), so that memory and
	// store end in the same order. The ban writer holds it read-locked.
	// Never held by Allowed or Emit.
	persistMu sync.RWMutex

	// Automatic bans wait in banq for their store write (history, entry),
	// done in batches by one ban writer goroutine started with the first
	// ban; pending counts bans queued or being written, for Flush.
	banqMu       sync.RWMutex // guards banqClosed and sends on banq
	banqClosed   bool
	banq         chan pendingBan
	startBanned  sync.Once
	banWG        sync.WaitGroup
	pendingMu    sync.Mutex // guards pending and drained
	pending      int
	drained      *sync.Cond
	banQueueFull atomic.Uint64
	banEvery     time.Duration // banCommitEvery; the package's tests shorten it

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closeOnce sync.Once
	isClosed  atomic.Bool

	seen, counted, ignored, refused striped
	evicted, autoBans, manualBans   atomic.Uint64
	unbans, storeErrors             atomic.Uint64
}

// policy is a validated, compiled Config. Replaced whole by Reconfigure.
type policy struct {
	cfg        Config
	kind       [256]int32
	reasons    map[string]int32
	natWindow  int32 // seconds
	maxSources int
}

// New validates cfg and returns an engine using st for durable entries. It
// does no I/O: call Load to read the store's entries, then Run.
func New(cfg Config, st store.Store, o Options) (*Engine, error) {
	if st == nil {
		return nil, fmt.Errorf("%w: fraud: nil store", ErrInvalid)
	}
	p, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		log:    o.Log,
		clock:  o.Now,
		recent: o.Recent,
		onBan:  o.OnBan,
		onLift: o.OnLift,
		st:     st,

		banEvery: banCommitEvery,
		seed:     rand.Uint64(),
		userHS:   maphash.MakeSeed(),
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.log = e.log.With("component", "fraud")
	if e.clock == nil {
		e.clock = time.Now
	}
	e.pol.Store(p)
	e.guard = newGuard(e.seed)
	e.wl = newWhitelist(p.cfg.Whitelist)
	e.shards = make([]*cshard, countShardsFor(cfg.MaxSources))
	for i := range e.shards {
		e.shards[i] = newCShard()
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.banq = make(chan pendingBan, banQueueSize)
	e.drained = sync.NewCond(&e.pendingMu)
	return e, nil
}

// compile validates cfg, reporting every problem, and precomputes lookups.
func compile(cfg Config) (*policy, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: fraud: "+format, append([]any{ErrInvalid}, args...)...))
	}
	if cfg.Threshold <= 0 {
		bad("Threshold must be positive, got %d", cfg.Threshold)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"BanFor", cfg.BanFor}, {"BanMax", cfg.BanMax}, {"RecidiveWindow", cfg.RecidiveWindow}, {"NATWindow", cfg.NATWindow}} {
		if d.v <= 0 {
			bad("%s must be a positive duration, got %s", d.name, d.v)
		}
	}
	if cfg.BanFor > 0 && cfg.BanMax > 0 && cfg.BanMax < cfg.BanFor {
		bad("BanMax (%s) is shorter than BanFor (%s)", cfg.BanMax, cfg.BanFor)
	}
	if cfg.NATWindow > maxNATWindow {
		bad("NATWindow %s is longer than %s", cfg.NATWindow, maxNATWindow)
	}
	if cfg.MaxSources <= 0 {
		bad("MaxSources must be positive, got %d", cfg.MaxSources)
	}
	if cfg.NATMaxFactor <= 0 {
		bad("NATMaxFactor must be positive, got %d", cfg.NATMaxFactor)
	}
	p := &policy{reasons: make(map[string]int32, len(cfg.ReasonWeights))}
	for k, w := range cfg.KindWeights {
		if w < 0 || w > maxWeight {
			bad("KindWeights[%s] = %d is out of range 0..%d", k, w, maxWeight)
			continue
		}
		p.kind[k] = int32(w)
	}
	for r, w := range cfg.ReasonWeights {
		if w < 0 || w > maxWeight {
			bad("ReasonWeights[%q] = %d is out of range 0..%d", event.Clip(r, 64), w, maxWeight)
			continue
		}
		p.reasons[r] = int32(w)
	}
	wl := make([]netip.Prefix, 0, len(cfg.Whitelist))
	for i, w := range cfg.Whitelist {
		n, err := normPrefix(w)
		if err != nil {
			bad("Whitelist[%d]: prefix %q is not valid", i, w.String())
			continue
		}
		wl = append(wl, n)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.cfg = cfg
	p.cfg.Whitelist = wl
	p.natWindow = int32(cfg.NATWindow / time.Second)
	p.maxSources = cfg.MaxSources
	return p, nil
}

// Limits of Config values that the compact per-source state depends on.
const (
	maxWeight    = 1000 // one event's weight; slot counters saturate at 65535
	maxNATWindow = 365 * 24 * time.Hour
)

// weight returns the weight of ev under p: ReasonWeights first, then
// KindWeights; successes and unknown kinds weigh 0.
func (p *policy) weight(ev *event.Event) int {
	if !ev.Kind.Suspicious() {
		return 0
	}
	if len(p.reasons) > 0 {
		if w, ok := p.reasons[ev.Reason]; ok {
			return int(w)
		}
	}
	return int(p.kind[ev.Kind])
}

// Reconfigure replaces the policy (weights, threshold, durations, the
// configuration whitelist, MaxSources). Counters, known users and bans are
// kept; a smaller MaxSources takes effect as new sources arrive and at the
// next sweep. A Config that fails validation leaves the old one in force.
func (e *Engine) Reconfigure(cfg Config) error {
	p, err := compile(cfg)
	if err != nil {
		return err
	}
	e.pol.Store(p)
	e.wl.setConfig(p.cfg.Whitelist)
	return nil
}

// Close stops Run and makes the write methods return ErrClosed. Automatic
// bans still waiting for their store writes are written first (each
// bounded by a timeout). It does not close the store. Idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.isClosed.Store(true)
		e.startBanned.Do(func() {}) // no writers start from now on
		e.banqMu.Lock()
		e.banqClosed = true
		close(e.banq)
		e.banqMu.Unlock()
		e.banWG.Wait()
		e.cancel()
	})
	return nil
}

func (e *Engine) closed() bool { return e.isClosed.Load() }

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{
		EventsSeen:     e.seen.load(),
		EventsCounted:  e.counted.load(),
		EventsIgnored:  e.ignored.load(),
		SourcesEvicted: e.evicted.Load(),
		AutoBans:       e.autoBans.Load(),
		ManualBans:     e.manualBans.Load(),
		Unbans:         e.unbans.Load(),
		Refused:        e.refused.load(),
		Blacklisted:    e.guard.size(),
		Whitelisted:    e.wl.size(),
		StoreErrors:    e.storeErrors.Load(),
	}
	for _, sh := range e.shards {
		sh.mu.Lock()
		s.Sources += len(sh.src)
		sh.mu.Unlock()
	}
	return s
}

// nowNanos is the clock in the compact form the guard compares with.
func (e *Engine) nowNanos() int64 { return e.clock().UnixNano() }

// Allowed reports whether a connection from a may proceed: true if a
// whitelist entry covers it, false if a blacklist entry in force covers it
// (the exact address first, then networks), true otherwise. An entry whose
// expiry has passed allows even before the sweep removes it. It allocates
// nothing and never waits for the store.
func (e *Engine) Allowed(a netip.Addr) bool {
	ok, h := e.allowed(a.Unmap())
	if !ok {
		e.refused.add(h)
	}
	return ok
}

// allowed is Allowed without counting; a must be unmapped.
func (e *Engine) allowed(a netip.Addr) (bool, uint64) {
	if !a.IsValid() {
		return true, 0
	}
	blocked, h := e.guard.blocked(a, e.nowNanos)
	return !blocked || e.wl.covers(a, e.nowNanos), h
}
