package banmirror

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pbxgate/pbxgate/internal/kernelbl"
	"github.com/pbxgate/pbxgate/internal/store"
)

// Sync is the kernel side; *kernelbl.Sync implements it.
type Sync interface {
	Add(entries ...kernelbl.Entry) error
	Remove(prefixes ...netip.Prefix) error
	Reconcile(want []kernelbl.Entry) error
}

// Settings are the values that may change on reload.
type Settings struct {
	// Resync is how often the kernel is reconciled with the stored
	// entries. 0 means one minute.
	Resync time.Duration
	// BanMax is the provisional lifetime of a ban reported through OnBan
	// until a reconcile gives it its stored expiry: the longest automatic
	// ban (fraud.blacklist_max). 0 means 24 hours.
	BanMax time.Duration
	// Trusted are networks never put in the kernel blacklist (the
	// firewall's trusted networks), besides the whitelist. Default none.
	Trusted []netip.Prefix
}

// Options configure a Mirror.
type Options struct {
	// Sync receives the bans. Required.
	Sync Sync
	// Entries lists a list's stored entries in force (the fraud engine's
	// Entries). Required.
	Entries func(ctx context.Context, l store.List) ([]store.Entry, error)
	Settings
	// Metrics records what the mirror does. Nil records nothing.
	Metrics *Metrics
	// Log receives failures and recoveries. Nil discards them. The mirror
	// adds "component", "kernelbl".
	Log *slog.Logger
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// QueueSize bounds the bans and lifts waiting for Run (distinct
	// prefixes). 0 means 4096.
	QueueSize int
	// Settle is how long after a burst of bans Run reconciles, so their
	// stored expiries replace the provisional ones; a lift or a full queue
	// reconciles after a tenth of it. 0 means 2 seconds.
	Settle time.Duration
}

// Defaults.
const (
	defaultResync    = time.Minute
	defaultBanMax    = 24 * time.Hour
	defaultQueueSize = 4096
	defaultSettle    = 2 * time.Second
	// maxProvisional bounds the bans kept until the store lists them.
	maxProvisional = 1 << 16
	// minRetry is the first delay after a failure; it doubles up to the
	// resync interval.
	minRetry = time.Second
	// remindEvery is how often a failure streak is logged again.
	remindEvery = 15 * time.Minute
	// finalDrainTimeout bounds the drain when Run stops.
	finalDrainTimeout = 5 * time.Second
)

// Mirror feeds a kernel blacklist from the fraud engine. OnBan, OnLift and
// Reconfigure are safe for concurrent use and never block on I/O; Run does
// the work.
type Mirror struct {
	sync    Sync
	entries func(context.Context, store.List) ([]store.Entry, error)
	met     *Metrics
	log     *slog.Logger
	now     func() time.Time
	qcap    int
	settle  time.Duration
	wake    chan struct{}

	mu       sync.Mutex            // guards the fields below; never held over I/O
	pending  map[netip.Prefix]bool // true: ban, false: lift
	spare    map[netip.Prefix]bool // the drained map, cleared, for reuse
	overflow bool                  // an item was dropped since the last drain
	settings Settings
	changed  bool // Reconfigure was called since the last drain

	work     sync.Mutex                 // serialises drains and reconciles; guards the fields below
	prov     map[netip.Prefix]time.Time // bans not (yet) listed by the store
	wlHoles  []netip.Prefix             // the whitelist at the last reconcile
	applied  map[netip.Prefix]struct{}  // prefixes the Sync was told to hold
	n4, n6   int                        // applied per family
	lastTry  time.Time                  // last reconcile attempt
	synced   bool                       // a reconcile succeeded
	failing  bool                       // in a failure streak
	failures int                        // failures in the streak
	loggedAt time.Time                  // when the streak was last logged
}

// New returns a Mirror. It does no I/O.
func New(o Options) (*Mirror, error) {
	if o.Sync == nil || o.Entries == nil {
		return nil, fmt.Errorf("%w: Sync and Entries are required", ErrInvalid)
	}
	m := &Mirror{
		sync:    o.Sync,
		entries: o.Entries,
		met:     o.Metrics,
		log:     o.Log,
		now:     o.Now,
		qcap:    o.QueueSize,
		settle:  o.Settle,
		wake:    make(chan struct{}, 1),
		pending: make(map[netip.Prefix]bool),
		spare:   make(map[netip.Prefix]bool),
		prov:    make(map[netip.Prefix]time.Time),
		applied: make(map[netip.Prefix]struct{}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "kernelbl")
	if m.now == nil {
		m.now = time.Now
	}
	if m.qcap <= 0 {
		m.qcap = defaultQueueSize
	}
	if m.settle <= 0 {
		m.settle = defaultSettle
	}
	m.settings = normSettings(o.Settings)
	return m, nil
}

func normSettings(s Settings) Settings {
	if s.Resync <= 0 {
		s.Resync = defaultResync
	}
	if s.BanMax <= 0 {
		s.BanMax = defaultBanMax
	}
	s.Trusted = slices.Clone(s.Trusted)
	return s
}

// OnBan queues a ban of p for the kernel. It is the fraud engine's
// Options.OnBan: it does not block and does no I/O.
func (m *Mirror) OnBan(p netip.Prefix) { m.enqueue(p, true) }

// OnLift queues the removal of p from the kernel and a reconcile soon
// after. It is the fraud engine's Options.OnLift.
func (m *Mirror) OnLift(p netip.Prefix) { m.enqueue(p, false) }

func (m *Mirror) enqueue(p netip.Prefix, ban bool) {
	if !p.IsValid() {
		return
	}
	p = p.Masked()
	m.mu.Lock()
	_, queued := m.pending[p]
	// Lifts, made by operators, may use a second queue's worth of room:
	// a flood of bans must not keep an unban from the kernel.
	limit := m.qcap
	if !ban {
		limit *= 2
	}
	if !queued && len(m.pending) >= limit {
		m.overflow = true
		m.mu.Unlock()
		m.met.drop()
		m.signal()
		return
	}
	m.pending[p] = ban
	m.mu.Unlock()
	m.signal()
}

func (m *Mirror) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Reconfigure replaces the settings; Run picks them up and reconciles soon
// (the trusted networks or the configuration's whitelist may have changed).
func (m *Mirror) Reconfigure(s Settings) {
	s = normSettings(s)
	m.mu.Lock()
	m.settings, m.changed = s, true
	m.mu.Unlock()
	m.signal()
}

func (m *Mirror) currentSettings() Settings {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settings
}

// Reconcile makes the kernel blacklist equal to the stored bans (plus the
// bans reported through OnBan that the store does not list yet) minus the
// whitelist and the trusted networks. The gateway calls it once before it
// serves; Run calls it periodically.
func (m *Mirror) Reconcile(ctx context.Context) error {
	m.work.Lock()
	defer m.work.Unlock()
	return m.reconcileLocked(ctx)
}

func (m *Mirror) reconcileLocked(ctx context.Context) error {
	st := m.currentSettings()
	now := m.now()
	m.lastTry = now
	bl, err := m.entries(ctx, store.Blacklist)
	if err == nil {
		var wl []store.Entry
		if wl, err = m.entries(ctx, store.Whitelist); err == nil {
			m.wlHoles = m.wlHoles[:0]
			for _, e := range wl {
				m.wlHoles = append(m.wlHoles, e.Prefix)
			}
		} else {
			err = fmt.Errorf("list the whitelist: %w", err)
		}
	} else {
		err = fmt.Errorf("list the blacklist: %w", err)
	}
	if err != nil {
		if ctx.Err() != nil {
			return err // stopping: not a failure
		}
		return m.failLocked(opReconcile, err)
	}
	listed := make(map[netip.Prefix]bool, len(bl))
	want := make([]kernelbl.Entry, 0, len(bl)+len(m.prov))
	for _, e := range bl {
		listed[e.Prefix.Masked()] = true
		want = append(want, kernelbl.Entry{Prefix: e.Prefix, Expires: e.Expires})
	}
	for p, exp := range m.prov {
		if listed[p] || !now.Before(exp) {
			delete(m.prov, p)
			continue
		}
		want = append(want, kernelbl.Entry{Prefix: p, Expires: exp})
	}
	parts := kernelbl.Subtract(want, m.holesLocked(st))
	if err := m.sync.Reconcile(parts); err != nil {
		return m.failLocked(opReconcile, err)
	}
	clear(m.applied)
	m.n4, m.n6 = 0, 0
	for _, e := range parts {
		m.setAppliedLocked(e.Prefix)
	}
	m.synced = true
	m.okLocked()
	m.met.reconciled(now, m.n4, m.n6)
	return nil
}

// holesLocked is what bans must never cover: the whitelist of the last
// reconcile and the trusted networks.
func (m *Mirror) holesLocked(st Settings) []netip.Prefix {
	return append(slices.Clip(m.wlHoles), st.Trusted...)
}

// drained says what a drain did, for Run's schedule.
type drained struct {
	bans, lifts bool
	failed      bool // a kernel update failed: reconcile to repair
	overflow    bool // the queue dropped items: reconcile to repair
	changed     bool // settings changed
}

// drain applies the queued bans and lifts.
func (m *Mirror) drain() drained {
	m.mu.Lock()
	batch := m.pending
	if m.spare == nil {
		m.spare = make(map[netip.Prefix]bool)
	}
	m.pending, m.spare = m.spare, nil
	d := drained{overflow: m.overflow, changed: m.changed}
	m.overflow, m.changed = false, false
	st := m.settings
	m.mu.Unlock()
	defer func() {
		clear(batch)
		m.mu.Lock()
		m.spare = batch
		m.mu.Unlock()
	}()
	if len(batch) == 0 {
		return d
	}

	m.work.Lock()
	defer m.work.Unlock()
	now := m.now()
	var bans []kernelbl.Entry
	var lifts []netip.Prefix
	for p, ban := range batch {
		if !ban {
			delete(m.prov, p)
			lifts = append(lifts, p)
			continue
		}
		if _, known := m.prov[p]; !known && len(m.prov) >= maxProvisional {
			d.overflow = true // the next reconcile takes it from the store
			m.met.drop()
			continue
		}
		exp := now.Add(st.BanMax)
		m.prov[p] = exp
		bans = append(bans, kernelbl.Entry{Prefix: p, Expires: exp})
	}
	if len(lifts) > 0 {
		d.lifts = true
		if err := m.sync.Remove(lifts...); err != nil {
			m.failLocked(opRemove, err)
			d.failed = true
		} else {
			for _, p := range lifts {
				m.deleteAppliedLocked(p)
			}
			m.met.removed(len(lifts))
		}
	}
	if len(bans) > 0 {
		d.bans = true
		parts := kernelbl.Subtract(bans, m.holesLocked(st))
		if len(parts) > 0 {
			if err := m.sync.Add(parts...); err != nil {
				m.failLocked(opAdd, err)
				d.failed = true
			} else {
				for _, e := range parts {
					m.setAppliedLocked(e.Prefix)
				}
				m.met.added(len(bans))
			}
		}
	}
	if !d.failed && m.synced {
		m.okLocked()
	}
	m.met.setPrefixes(m.n4, m.n6)
	return d
}

// setAppliedLocked and deleteAppliedLocked keep applied and its counts
// per family.
func (m *Mirror) setAppliedLocked(p netip.Prefix) {
	if _, ok := m.applied[p]; ok {
		return
	}
	m.applied[p] = struct{}{}
	if p.Addr().Is4() {
		m.n4++
	} else {
		m.n6++
	}
}

func (m *Mirror) deleteAppliedLocked(p netip.Prefix) {
	if _, ok := m.applied[p]; !ok {
		return
	}
	delete(m.applied, p)
	if p.Addr().Is4() {
		m.n4--
	} else {
		m.n6--
	}
}

// failLocked records a failure and returns err wrapped; the first of a
// streak is logged at once, then a reminder every remindEvery.
func (m *Mirror) failLocked(op string, err error) error {
	err = fmt.Errorf("kernel blacklist %s: %w", op, err)
	m.met.failed(op)
	now := m.now()
	m.failures++
	switch {
	case !m.failing:
		m.failing, m.loggedAt = true, now
		m.log.Error("kernel blacklist update failed; retrying", "op", op, "err", err)
	case now.Sub(m.loggedAt) >= remindEvery:
		m.loggedAt = now
		m.log.Error("kernel blacklist update still failing; retrying", "op", op, "failures", m.failures, "err", err)
	}
	return err
}

// okLocked ends a failure streak.
func (m *Mirror) okLocked() {
	m.met.setUp(true)
	if m.failing {
		m.log.Info("kernel blacklist updates work again", "failures", m.failures)
	}
	m.failing, m.failures = false, 0
}

// Run drains the queue as bans and lifts arrive and reconciles on the
// schedule described in the package documentation, until ctx ends; then it
// applies what is still queued (bounded by a few seconds) and returns. It
// reconciles at once unless Reconcile succeeded before.
func (m *Mirror) Run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		retry time.Duration // backoff after a failed reconcile; 0: none
		early time.Time     // an earlier reconcile is wanted; zero: none
	)
	m.work.Lock()
	if !m.synced {
		early = m.now()
	}
	m.work.Unlock()
	for {
		m.work.Lock()
		last := m.lastTry
		m.work.Unlock()
		st := m.currentSettings()
		due := last.Add(st.Resync)
		if retry > 0 {
			// Failing: retry with backoff, however often bans ask for
			// an early reconcile.
			due = last.Add(min(retry, st.Resync))
		} else if !early.IsZero() && early.Before(due) {
			due = early
		}
		timer.Reset(max(due.Sub(m.now()), 0))
		select {
		case <-ctx.Done():
			m.finalDrain()
			return
		case <-m.wake:
			d := m.drain()
			wait := time.Duration(-1)
			switch {
			case d.failed || d.overflow || d.lifts || d.changed:
				wait = m.settle / 10
			case d.bans:
				wait = m.settle
			}
			if t := m.now().Add(wait); wait >= 0 && (early.IsZero() || t.Before(early)) {
				early = t
			}
		case <-timer.C:
			early = time.Time{}
			if err := m.Reconcile(ctx); err == nil {
				retry = 0
			} else if ctx.Err() == nil {
				retry = max(minRetry, retry*2)
			}
		}
	}
}

// finalDrain applies what is still queued when Run stops, giving up after
// finalDrainTimeout (the kernel may be what hangs).
func (m *Mirror) finalDrain() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.drain()
	}()
	t := time.NewTimer(finalDrainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		m.log.Warn("kernel blacklist: bans still queued at shutdown were not applied; the next start reconciles them")
	}
}

// Metric updates, safe on a nil *Metrics.

func (x *Metrics) drop() {
	if x != nil {
		x.drops.Inc()
	}
}

func (x *Metrics) failed(op string) {
	if x != nil {
		x.errors.WithLabelValues(op).Inc()
		x.up.Set(0)
	}
}

func (x *Metrics) setUp(ok bool) {
	if x != nil {
		if ok {
			x.up.Set(1)
		} else {
			x.up.Set(0)
		}
	}
}

func (x *Metrics) added(n int) {
	if x != nil {
		x.adds.Add(float64(n))
	}
}

func (x *Metrics) removed(n int) {
	if x != nil {
		x.removes.Add(float64(n))
	}
}

func (x *Metrics) reconciled(now time.Time, v4, v6 int) {
	if x != nil {
		x.reconcile.Inc()
		x.lastOK.Set(float64(now.UnixNano()) / 1e9)
		x.setPrefixes(v4, v6)
	}
}

func (x *Metrics) setPrefixes(v4, v6 int) {
	if x != nil {
		x.prefixes.WithLabelValues("ipv4").Set(float64(v4))
		x.prefixes.WithLabelValues("ipv6").Set(float64(v6))
	}
}
