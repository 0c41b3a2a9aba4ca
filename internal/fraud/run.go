package fraud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/pbxgate/pbxgate/internal/store"
)

// Load replaces the in-memory blacklist and run-time whitelist with the
// store's entries and deletes the entries that expired meanwhile (logging
// each lifted ban as "source unbanned", reason expired). Call it once
// before serving; calling it again resynchronises memory with the store.
func (e *Engine) Load(ctx context.Context) error {
	if e.closed() {
		return ErrClosed
	}
	now := e.clock()
	e.persistMu.Lock()
	defer e.persistMu.Unlock()

	ng := newGuard(e.seed)
	var expiredBL, expiredWL []netip.Prefix
	var bad int
	err := e.st.Range(ctx, store.Blacklist, func(ent store.Entry) bool {
		p, err := normPrefix(ent.Prefix)
		switch {
		case err != nil:
			bad++
		case ent.Expired(now):
			expiredBL = append(expiredBL, ent.Prefix)
		default:
			ng.set(p, nanos(ent.Expires), false)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("fraud: load blacklist: %w", err)
	}
	run := make(map[netip.Prefix]int64)
	err = e.st.Range(ctx, store.Whitelist, func(ent store.Entry) bool {
		p, err := normPrefix(ent.Prefix)
		switch {
		case err != nil:
			bad++
		case ent.Expired(now):
			expiredWL = append(expiredWL, ent.Prefix)
		default:
			run[p] = nanos(ent.Expires)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("fraud: load whitelist: %w", err)
	}
	e.guard.replace(ng)
	e.wl.replaceRun(run)
	if bad > 0 {
		e.log.Warn("store holds entries with invalid prefixes; ignored", "count", bad)
	}

	var errs []error
	for _, p := range expiredBL {
		if _, _, err := e.st.Delete(ctx, store.Blacklist, p); err != nil {
			errs = append(errs, err)
			continue
		}
		e.unbanned(ctx, p, "expired")
	}
	for _, p := range expiredWL {
		if _, _, err := e.st.Delete(ctx, store.Whitelist, p); err != nil {
			errs = append(errs, err)
			continue
		}
		e.log.LogAttrs(ctx, slog.LevelInfo, "whitelist entry expired", slog.String("src", p.String()))
	}
	if len(errs) > 0 {
		return fmt.Errorf("fraud: load: deleting %d expired entries failed: %w", len(errs), errors.Join(errs...))
	}
	return nil
}

// Sweep and prune periods of Run.
const (
	sweepEvery = time.Second
	pruneEvery = time.Hour
)

// Run keeps the engine's state current until ctx ends or Close is called,
// then returns nil: every second it lifts expired entries (deleting them
// from the store, logging "source unbanned" reason expired) and forgets idle
// counters; every hour (and at start) it prunes the ban history older than
// RecidiveWindow and stale known users; throughout it applies the changes
// other nodes announce through store.Watch.
func (e *Engine) Run(ctx context.Context) error {
	if e.closed() {
		return ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.ctx, cancel)
	defer stop()

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.st.Watch(ctx, e.applyChange); err != nil && ctx.Err() == nil {
			e.log.Error("store watch failed; changes by other nodes are not applied until restart", "err", err)
		}
	})
	defer wg.Wait()

	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	e.prune(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sweep.C:
			e.sweep(ctx)
		case <-prune.C:
			e.prune(ctx)
		}
	}
}

// sweep lifts expired entries and forgets idle counters.
func (e *Engine) sweep(ctx context.Context) {
	t := e.clock()
	now := nanos(t)
	e.persistMu.Lock()
	for _, p := range e.guard.expire(now) {
		if _, _, err := e.st.Delete(ctx, store.Blacklist, p); err != nil {
			e.storeFailed("delete expired ban", p, err)
		}
		e.unbanned(ctx, p, "expired")
	}
	for _, p := range e.wl.expire(now) {
		if _, _, err := e.st.Delete(ctx, store.Whitelist, p); err != nil {
			e.storeFailed("delete expired whitelist entry", p, err)
		}
		e.log.LogAttrs(ctx, slog.LevelInfo, "whitelist entry expired", slog.String("src", p.String()))
	}
	e.persistMu.Unlock()

	pol := e.pol.Load()
	cs := secs(t)
	for i, sh := range e.shards {
		limit := capFor(pol.maxSources, len(e.shards), i)
		sh.mu.Lock()
		// Visit every state about once per window.
		budget := max(256, len(sh.src)/(windowSeconds/2))
		if n := sh.sweepLocked(cs, budget, limit); n > 0 {
			e.evicted.Add(uint64(n))
		}
		sh.mu.Unlock()
	}
}

// prune forgets old ban history and stale known users.
func (e *Engine) prune(ctx context.Context) {
	t := e.clock()
	pol := e.pol.Load()
	if _, err := e.st.PruneHistory(ctx, t.Add(-pol.cfg.RecidiveWindow)); err != nil && ctx.Err() == nil {
		e.log.Error("store prune history failed", "err", err)
	}
	cutoff := secs(t) - pol.natWindow
	for _, sh := range e.shards {
		sh.mu.Lock()
		sh.pruneNATLocked(cutoff)
		sh.mu.Unlock()
	}
}

// applyChange mirrors an entry another node wrote or deleted.
func (e *Engine) applyChange(c store.Change) {
	p, err := normPrefix(c.Entry.Prefix)
	if err != nil {
		return
	}
	now := e.clock()
	switch {
	case c.Entry.List == store.Blacklist && c.Deleted:
		e.guard.remove(p)
	case c.Entry.List == store.Blacklist:
		if c.Entry.Expired(now) {
			return
		}
		e.guard.set(p, nanos(c.Entry.Expires), false)
		if e.onBan != nil {
			e.onBan(p)
		}
	case c.Entry.List == store.Whitelist && c.Deleted:
		e.wl.remove(p)
	case c.Entry.List == store.Whitelist:
		if !c.Entry.Expired(now) {
			e.wl.set(p, nanos(c.Entry.Expires))
		}
	}
	e.log.Debug("entry changed by another node", "list", c.Entry.List.String(), "src", p.String(), "deleted", c.Deleted)
}
