package fraud

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pbxgate/pbxgate/internal/store"
)

// configNote is the Note of whitelist entries from the configuration file.
const configNote = "configuration file"

// manualReason is the Reason of entries made by an operator.
const manualReason = "manual"

func checkDuration(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%w: duration %s is negative (0 means forever)", ErrInvalid, d)
	}
	return nil
}

func expiresAfter(now time.Time, d time.Duration) time.Time {
	if d == 0 {
		return time.Time{}
	}
	return now.Add(d)
}

// manualEntry checks an operator's entry for l and builds it.
func (e *Engine) manualEntry(l store.List, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	if e.closed() {
		return store.Entry{}, ErrClosed
	}
	p, err := normPrefix(p)
	if err != nil {
		return store.Entry{}, err
	}
	if err := checkDuration(d); err != nil {
		return store.Entry{}, err
	}
	now := e.clock()
	return store.Entry{
		List:    l,
		Prefix:  p,
		Origin:  store.Manual,
		Reason:  manualReason,
		Note:    note,
		Created: now,
		Expires: expiresAfter(now, d),
	}, nil
}

// Ban blacklists p (an address or a network) for d, 0 meaning forever,
// replacing any entry with the same prefix. The entry is written to the
// store first and enforced once that succeeded; a store error is returned
// and nothing changes. Open connections from inside p are closed through
// Options.OnBan. A ban that overlaps the whitelist is accepted, but the
// whitelist still wins for the addresses it covers.
func (e *Engine) Ban(ctx context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	ent, err := e.manualEntry(store.Blacklist, p, d, note)
	if err != nil {
		return store.Entry{}, err
	}
	p = ent.Prefix
	e.persistMu.Lock()
	if err := e.st.Put(ctx, ent); err != nil {
		e.persistMu.Unlock()
		return store.Entry{}, fmt.Errorf("fraud: ban %s: %w", p, err)
	}
	e.guard.set(p, nanos(ent.Expires), false)
	e.persistMu.Unlock()
	e.manualBans.Add(1)
	if e.onBan != nil {
		e.onBan(p)
	}
	e.log.LogAttrs(ctx, slog.LevelWarn, "source banned",
		slog.String("src", p.String()),
		slog.Duration("for", d),
		slog.String("origin", store.Manual.String()),
		slog.String("reason", manualReason),
		slog.String("note", clipNote(note)))
	return ent, nil
}

func clipNote(s string) string { return field(s, 256) }

// Unban removes the blacklist entry with exactly prefix p (not the
// addresses or networks inside it) and forgets the counters of the sources
// inside p, so their old events cannot ban them again. It reports whether
// there was such an entry. On a store error nothing changes.
func (e *Engine) Unban(ctx context.Context, p netip.Prefix) (store.Entry, bool, error) {
	if e.closed() {
		return store.Entry{}, false, ErrClosed
	}
	p, err := normPrefix(p)
	if err != nil {
		return store.Entry{}, false, err
	}
	e.persistMu.Lock()
	ent, found, err := e.st.Delete(ctx, store.Blacklist, p)
	if err != nil {
		e.persistMu.Unlock()
		return store.Entry{}, false, fmt.Errorf("fraud: unban %s: %w", p, err)
	}
	exp, inMem := e.guard.remove(p)
	e.persistMu.Unlock()
	e.forget(p)
	if e.onLift != nil {
		e.onLift(p)
	}
	if !found && inMem {
		// The ban's store write had failed; report what memory knew.
		ent, found = store.Entry{List: store.Blacklist, Prefix: p, Expires: fromNanos(exp)}, true
	}
	if found {
		e.unbanned(ctx, p, "operator")
	}
	return ent, found, nil
}

func (e *Engine) unbanned(ctx context.Context, p netip.Prefix, why string) {
	e.unbans.Add(1)
	e.log.LogAttrs(ctx, slog.LevelInfo, "source unbanned",
		slog.String("src", p.String()), slog.String("reason", why))
}

// forget drops the counters of every source inside p.
func (e *Engine) forget(p netip.Prefix) {
	if isHost(p) {
		_, sh := e.cshardOf(hashAddr(p.Addr(), e.seed))
		sh.mu.Lock()
		sh.forgetLocked(p)
		sh.mu.Unlock()
		return
	}
	for _, sh := range e.shards {
		sh.mu.Lock()
		sh.forgetLocked(p)
		sh.mu.Unlock()
	}
}

// Allow whitelists p for d, 0 meaning forever, and lifts every blacklist
// entry for an address or network inside p, so an automatic ban becomes a
// whitelist entry in one step. Blacklist entries for wider networks stay
// (the whitelist wins over them anyway). The whitelist entry is durable
// before Allow returns; a store error is returned and nothing changes.
func (e *Engine) Allow(ctx context.Context, p netip.Prefix, d time.Duration, note string) (store.Entry, error) {
	ent, err := e.manualEntry(store.Whitelist, p, d, note)
	if err != nil {
		return store.Entry{}, err
	}
	p = ent.Prefix
	e.persistMu.Lock()
	defer e.persistMu.Unlock()
	if err := e.st.Put(ctx, ent); err != nil {
		return store.Entry{}, fmt.Errorf("fraud: allow %s: %w", p, err)
	}
	e.wl.set(p, nanos(ent.Expires))
	if e.onLift != nil {
		e.onLift(p)
	}
	e.log.LogAttrs(ctx, slog.LevelInfo, "source whitelisted",
		slog.String("src", p.String()), slog.Duration("for", d), slog.String("note", clipNote(note)))

	// Lift blacklist entries inside p: those in memory and those only in
	// the store (e.g. expired but not yet swept, or written by another node).
	lift := make(map[netip.Prefix]bool)
	for _, q := range e.guard.within(p) {
		lift[q] = true
	}
	err = e.st.Range(ctx, store.Blacklist, func(b store.Entry) bool {
		if inside(b.Prefix, p) {
			lift[b.Prefix] = true
		}
		return true
	})
	if err != nil {
		return ent, fmt.Errorf("fraud: allow %s: whitelisted, but listing blacklist entries to lift failed: %w", p, err)
	}
	var errs []error
	for q := range lift {
		_, inStore, err := e.st.Delete(ctx, store.Blacklist, q)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, inMem := e.guard.remove(q)
		if inStore || inMem {
			e.unbanned(ctx, q, "whitelisted")
		}
	}
	e.forget(p)
	if len(errs) > 0 {
		return ent, fmt.Errorf("fraud: allow %s: whitelisted, but lifting %d blacklist entries failed: %w", p, len(errs), errs[0])
	}
	return ent, nil
}

// Disallow removes the run-time whitelist entry with exactly prefix p and
// reports whether there was one. Entries from the configuration file cannot
// be removed (ErrConfigEntry).
func (e *Engine) Disallow(ctx context.Context, p netip.Prefix) (store.Entry, bool, error) {
	if e.closed() {
		return store.Entry{}, false, ErrClosed
	}
	p, err := normPrefix(p)
	if err != nil {
		return store.Entry{}, false, err
	}
	if e.wl.isConfig(p) {
		return store.Entry{}, false, fmt.Errorf("fraud: disallow %s: %w", p, ErrConfigEntry)
	}
	e.persistMu.Lock()
	defer e.persistMu.Unlock()
	ent, found, err := e.st.Delete(ctx, store.Whitelist, p)
	if err != nil {
		return store.Entry{}, false, fmt.Errorf("fraud: disallow %s: %w", p, err)
	}
	exp, inMem := e.wl.remove(p)
	if !found && inMem {
		ent, found = store.Entry{List: store.Whitelist, Prefix: p, Expires: fromNanos(exp)}, true
	}
	if found {
		e.log.LogAttrs(ctx, slog.LevelInfo, "source no longer whitelisted", slog.String("src", p.String()))
	}
	return ent, found, nil
}

// Entries lists l's entries in force, from the store (expired ones are
// skipped). The whitelist starts with the configuration file's entries
// (Origin Manual, Note "configuration file").
func (e *Engine) Entries(ctx context.Context, l store.List) ([]store.Entry, error) {
	if l != store.Blacklist && l != store.Whitelist {
		return nil, fmt.Errorf("%w: list %s", ErrInvalid, l)
	}
	now := e.clock()
	var out []store.Entry
	cfg := make(map[netip.Prefix]bool)
	if l == store.Whitelist {
		for _, p := range e.pol.Load().cfg.Whitelist {
			if cfg[p] {
				continue
			}
			cfg[p] = true
			out = append(out, configEntry(p))
		}
	}
	err := e.st.Range(ctx, l, func(ent store.Entry) bool {
		if !ent.Expired(now) && !cfg[ent.Prefix] {
			out = append(out, ent)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("fraud: list %s: %w", l, err)
	}
	return out, nil
}

func configEntry(p netip.Prefix) store.Entry {
	return store.Entry{List: store.Whitelist, Prefix: p, Origin: store.Manual, Reason: manualReason, Note: configNote}
}

// Inspect reports what the engine knows about a: whether it is allowed, the
// entries covering it, its score and the threshold that applies.
func (e *Engine) Inspect(ctx context.Context, a netip.Addr) (SourceInfo, error) {
	if !a.IsValid() {
		return SourceInfo{}, fmt.Errorf("%w: invalid address", ErrInvalid)
	}
	a = a.Unmap().WithZone("")
	p := e.pol.Load()
	t := e.clock()
	now := nanos(t)
	allowed, _ := e.allowed(a)
	info := SourceInfo{Addr: a, Allowed: allowed}

	if wp, v, ok := e.wl.covering(a, now); ok {
		ent := configEntry(wp)
		if !v.cfg {
			var err error
			if ent, ok, err = e.st.Get(ctx, store.Whitelist, wp); err != nil {
				return SourceInfo{}, fmt.Errorf("fraud: inspect %s: %w", a, err)
			} else if !ok {
				ent = store.Entry{List: store.Whitelist, Prefix: wp, Expires: fromNanos(v.exp)}
			}
		}
		info.Whitelisted = &ent
	}
	if bp, exp, ok := e.guard.covering(a, now); ok {
		ent, found, err := e.st.Get(ctx, store.Blacklist, bp)
		if err != nil {
			return SourceInfo{}, fmt.Errorf("fraud: inspect %s: %w", a, err)
		}
		if !found {
			ent = store.Entry{List: store.Blacklist, Prefix: bp, Expires: fromNanos(exp)}
		}
		info.Blacklisted = &ent
	}

	cs := secs(t)
	_, sh := e.cshardOf(hashAddr(a, e.seed))
	sh.mu.Lock()
	if ns := sh.natLocked(a, cs-p.natWindow); ns != nil {
		info.KnownUsers = len(ns.users)
	}
	if i := sh.lookupLocked(a); i >= 0 {
		s := &sh.src[i]
		u, k := s.score(slotOf(cs))
		info.Score = u + k
		if u+k > 0 {
			info.LastSeen = fromSecs(s.last)
		}
	}
	sh.mu.Unlock()
	info.Threshold = p.cfg.Threshold * max(1, min(info.KnownUsers, p.cfg.NATMaxFactor))
	return info, nil
}
