package fraud

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/store"
)

// Emit counts ev against its source. It implements event.Sink and is safe
// for concurrent use. It does no I/O: when ev tips its source over the
// threshold, the source is refused by Allowed at once, Options.OnBan runs,
// and the ban is queued for the ban writer, which reads its history, writes
// it to the store (with the other bans of a wave, in one write) and logs it.
func (e *Engine) Emit(ev event.Event) {
	a := ev.Source.Unmap().WithZone("")
	h := hashAddr(a, e.seed)
	e.seen.add(h)
	p := e.pol.Load()
	if !p.cfg.Enabled || !a.IsValid() || e.closed() {
		e.ignored.add(h)
		return
	}
	if ev.Kind == event.Success {
		e.ignored.add(h)
		if ev.User != "" && !e.wl.covers(a, e.nowNanos) {
			e.recordSuccess(p, a, h, &ev)
		}
		return
	}
	w := p.weight(&ev)
	if w <= 0 || e.wl.covers(a, e.nowNanos) {
		e.ignored.add(h)
		return
	}
	if banned, _ := e.guard.blocked(a, e.nowNanos); banned {
		e.ignored.add(h)
		return
	}
	e.counted.add(h)
	t := e.clock()
	now := secs(t)
	var uh uint64
	if ev.User != "" {
		uh = e.userHash(ev.Service, ev.User)
	}
	si, sh := e.cshardOf(h)
	sh.mu.Lock()
	v := e.countLocked(sh, si, p, a, ev.User != "", uh, w, now)
	if v.ban {
		// Counted as pending before it is in force, so that Flush called by
		// anyone who sees the ban waits for its store writes.
		e.pendingMu.Lock()
		e.pending++
		e.pendingMu.Unlock()
		// Refuse the source at once, before any store I/O; the real expiry
		// is set once the ban history is read. Deciding and marking under
		// the shard lock makes this goroutine the only one banning a.
		e.guard.set(hostPrefix(a), nanos(t.Add(p.cfg.BanMax)), false)
	}
	sh.mu.Unlock()
	if v.ban {
		if e.onBan != nil {
			e.onBan(hostPrefix(a))
		}
		e.queueBan(pendingBan{p: p, addr: a, at: t, v: v})
	}
}

// pendingBan is an automatic ban in force in memory, waiting for its store
// writes.
type pendingBan struct {
	p    *policy
	addr netip.Addr
	at   time.Time
	v    verdict
}

const (
	// banQueueSize bounds the automatic bans waiting for the store. A
	// burst beyond it stays in force in memory but is not written
	// (Stats.StoreErrors), rather than making Emit wait for the disk.
	banQueueSize = 16384
	// banCommitEvery is the least time between two store writes of
	// automatic bans: a lone ban is written at once, the bans of a wave
	// that arrive meanwhile wait and go together in the next write. Each
	// write is a commit with its disk syncs, which on a one-core host hold
	// the only scheduler thread for milliseconds; a wave of 1,000 bans
	// written one commit per 10 ms (bbolt's batch) stalled the proxy
	// about 6 % of the time (bench/fraud.sh).
	banCommitEvery = 250 * time.Millisecond
	// maxBanBatch bounds the bans written in one store write.
	maxBanBatch = 1024
	// banYieldEvery is how many bans' evidence the writer gathers before
	// it lets other goroutines run.
	banYieldEvery = 16
)

// queueBan hands b, already counted in pending, to the ban writer.
func (e *Engine) queueBan(b pendingBan) {
	e.startBanned.Do(func() {
		e.banWG.Add(1)
		go func() {
			defer e.banWG.Done()
			e.writeBans()
		}()
	})
	e.banqMu.RLock()
	defer e.banqMu.RUnlock()
	if e.banqClosed {
		e.banDone(1) // Close has closed the queue: the ban stays in memory only
		return
	}
	select {
	case e.banq <- b:
	default:
		e.banDone(1)
		e.banQueueFull.Add(1)
		e.storeFailed("queue ban", hostPrefix(b.addr), errBanQueueFull)
	}
}

// banDone counts n queued bans as written (or given up).
func (e *Engine) banDone(n int) {
	e.pendingMu.Lock()
	if e.pending -= n; e.pending == 0 {
		e.drained.Broadcast()
	}
	e.pendingMu.Unlock()
}

// writeBans is the ban writer: it takes the queued bans in batches, at most
// one batch per banCommitEvery (e.banEvery), until the queue is closed.
func (e *Engine) writeBans() {
	batch := make([]pendingBan, 0, 64)
	var last time.Time
	for b := range e.banq {
		batch = append(batch[:0], b)
		open := true
		if wait := e.banEvery - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			batch, open = e.gatherBans(batch, t.C)
			t.Stop()
		}
		if open {
			batch, _ = e.gatherBans(batch, nil)
		}
		last = time.Now()
		for rest := batch; len(rest) > 0; {
			// One store write per recidive window (a reload may change it).
			n := 1
			for n < len(rest) && rest[n].p.cfg.RecidiveWindow == rest[0].p.cfg.RecidiveWindow {
				n++
			}
			e.finishAutoBans(rest[:n])
			rest = rest[n:]
		}
		e.banDone(len(batch))
		clear(batch)
	}
}

var errBanQueueFull = errors.New("too many bans waiting for the store; this one stays in memory only")

// Flush waits until every automatic ban made so far is written to the
// store (or failed to be), or ctx ends. The gateway calls it before closing
// the store; tests call it before reading the store.
func (e *Engine) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		e.pendingMu.Lock()
		e.drained.Broadcast()
		e.pendingMu.Unlock()
	})
	defer stop()
	e.pendingMu.Lock()
	defer e.pendingMu.Unlock()
	for e.pending > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.drained.Wait()
	}
	return nil
}

func (e *Engine) userHash(service, user string) uint64 {
	var mh maphash.Hash
	mh.SetSeed(e.userHS)
	mh.WriteString(service)
	mh.WriteByte(0)
	mh.WriteString(user)
	return mh.Sum64()
}

func (e *Engine) recordSuccess(p *policy, a netip.Addr, h uint64, ev *event.Event) {
	now := secs(e.clock())
	uh := e.userHash(ev.Service, ev.User)
	si, sh := e.cshardOf(h)
	limit := capFor(p.maxSources, len(e.shards), si)
	sh.mu.Lock()
	sh.recordSuccessLocked(a, uh, now, now-p.natWindow, p.cfg.NATMaxFactor, limit)
	sh.mu.Unlock()
}

// banDuration is BanFor doubled for each earlier ban in the recidive
// window, capped at BanMax.
func banDuration(c *Config, level int) time.Duration {
	d := c.BanFor
	for i := 1; i < level && d < c.BanMax; i++ {
		if d > c.BanMax/2 {
			return c.BanMax
		}
		d *= 2
	}
	return min(d, c.BanMax)
}

// gatherBans adds queued bans to batch, up to maxBanBatch: until until
// fires or, when until is nil, while bans are queued. It reports false when
// the queue was closed.
func (e *Engine) gatherBans(batch []pendingBan, until <-chan time.Time) ([]pendingBan, bool) {
	for len(batch) < maxBanBatch {
		var (
			b  pendingBan
			ok bool
		)
		if until == nil {
			select {
			case b, ok = <-e.banq:
			default:
				return batch, true
			}
		} else {
			select {
			case b, ok = <-e.banq:
			case <-until:
				return batch, true
			}
		}
		if !ok {
			return batch, false
		}
		batch = append(batch, b)
	}
	return batch, true
}

// finishAutoBans completes automatic bans already in force in the guard
// (the ban writer runs it): escalation level from the store's history,
// entry with reason and evidence, one store write for all of them, one log
// line each. All bans share one recidive window.
func (e *Engine) finishAutoBans(bans []pendingBan) {
	// Not e.ctx: Close lets the writer finish what is queued.
	ctx, cancel := context.WithTimeout(context.Background(), banWriteTimeout)
	defer cancel()
	type result struct {
		done     bool // the entry was built (with the store's history or without)
		live     bool
		level    int
		d        time.Duration
		reason   string
		evidence []string
	}
	res := make([]result, len(bans))
	// The evidence first, outside the store's write; the writer yields now
	// and then, so a wave of bans does not hold a one-core gateway's only
	// thread for long.
	for i := range bans {
		b := &bans[i]
		res[i].reason, res[i].evidence = e.describe(b.p, b.addr, b.at, b.v)
		if i%banYieldEvery == banYieldEvery-1 {
			runtime.Gosched()
		}
	}
	build := func(i int, h store.History) (store.Entry, bool) {
		b, r := &bans[i], &res[i]
		r.done = true
		r.level = max(h.Bans, 1)
		r.d = banDuration(&b.p.cfg, r.level)
		ent := store.Entry{
			List:      store.Blacklist,
			Prefix:    hostPrefix(b.addr),
			Origin:    store.Auto,
			Reason:    r.reason,
			Evidence:  r.evidence,
			Created:   b.at,
			FirstSeen: b.v.first,
			LastSeen:  b.v.last,
			Count:     b.v.total,
			Expires:   b.at.Add(r.d),
			Level:     r.level,
		}
		// An operator may have lifted the ban meanwhile; then it stays
		// lifted and is not written.
		r.live = e.guard.set(ent.Prefix, nanos(ent.Expires), true)
		return ent, r.live
	}
	auto := make([]store.AutoBan, len(bans))
	for i := range bans {
		auto[i] = store.AutoBan{Addr: bans[i].addr, At: bans[i].at,
			Entry: func(h store.History) (store.Entry, bool) { return build(i, h) }}
	}
	// Read-locked against the operator's changes (write-locked), so that
	// memory and store end in the same order.
	e.persistMu.RLock()
	err := e.st.RecordBans(ctx, bans[0].p.cfg.RecidiveWindow, auto)
	if err != nil {
		for i := range bans {
			if !res[i].done {
				build(i, store.History{}) // level unknown: the first ban's duration
			}
		}
	}
	e.persistMu.RUnlock()
	if err != nil {
		e.storeFailed("write bans", hostPrefix(bans[0].addr), fmt.Errorf("%d bans not written: %w", len(bans), err))
	}
	for i, r := range res {
		if !r.live {
			continue
		}
		if i%banYieldEvery == banYieldEvery-1 {
			runtime.Gosched()
		}
		e.autoBans.Add(1)
		e.log.LogAttrs(context.Background(), slog.LevelWarn, "source banned",
			slog.String("src", bans[i].addr.String()),
			slog.Duration("for", r.d),
			slog.Int("level", r.level),
			slog.String("origin", store.Auto.String()),
			slog.String("reason", r.reason))
	}
}

func (e *Engine) storeFailed(op string, p netip.Prefix, err error) {
	e.storeErrors.Add(1)
	e.log.LogAttrs(context.Background(), slog.LevelError, "store "+op+" failed",
		slog.String("src", p.String()), slog.Any("err", err))
}

// maxRecent bounds how many events are asked of Options.Recent to explain
// one ban.
const maxRecent = 1024

// describe builds an automatic ban's Reason and Evidence from the verdict
// and the source's recent events (Options.Recent).
func (e *Engine) describe(p *policy, a netip.Addr, at time.Time, v verdict) (string, []string) {
	var b strings.Builder
	b.WriteString(strconv.Itoa(v.total))
	b.WriteString(" weighted events in " + windowLabel)
	switch {
	case v.knownUsers == 0:
		fmt.Fprintf(&b, " (threshold %d)", v.threshold)
	case v.byUnknownCap:
		fmt.Fprintf(&b, ", %d not from known users (threshold %d; %d known users)", v.unknown, v.threshold, v.knownUsers)
	default:
		fmt.Fprintf(&b, " (threshold %d for %d known users)", v.threshold, v.knownUsers)
	}
	if e.recent == nil {
		return b.String(), nil
	}
	// The window's events: they tipped the ban.
	since := at.Add(-windowSeconds * time.Second)
	evs := e.recent(a, since, min(max(v.total+store.MaxEvidence, store.MaxEvidence), maxRecent))
	type group struct {
		name string
		n    int
	}
	var groups []group
	var weighted []event.Event
	for _, ev := range evs {
		if p.weight(&ev) <= 0 {
			continue
		}
		weighted = append(weighted, ev)
		if !ev.Time.IsZero() && ev.Time.Before(since) {
			continue
		}
		name := ev.Kind.String() + "/" + event.Clip(ev.Reason, 64)
		if i := slices.IndexFunc(groups, func(g group) bool { return g.name == name }); i >= 0 {
			groups[i].n++
		} else {
			groups = append(groups, group{name, 1})
		}
	}
	slices.SortStableFunc(groups, func(x, y group) int { return y.n - x.n })
	const maxGroups = 6
	for i, g := range groups {
		if i == maxGroups {
			b.WriteString(", …")
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(g.name + " ×" + strconv.Itoa(g.n))
	}
	if len(weighted) > store.MaxEvidence {
		weighted = weighted[len(weighted)-store.MaxEvidence:]
	}
	evidence := make([]string, 0, len(weighted))
	for _, ev := range weighted {
		evidence = append(evidence, formatEvent(ev))
	}
	return b.String(), evidence
}

// formatEvent renders one event as a line of evidence, attacker-controlled
// text clipped and escaped:
//
//	2026-11-21T23:01:02Z rejected_by_service status listener=web service=portal user=alice detail=401
func formatEvent(ev event.Event) string {
	var b strings.Builder
	if ev.Time.IsZero() {
		b.WriteString("-")
	} else {
		b.WriteString(ev.Time.UTC().Format(time.RFC3339))
	}
	b.WriteString(" " + ev.Kind.String())
	if ev.Reason != "" {
		b.WriteString(" " + field(ev.Reason, 64))
	}
	for _, f := range []struct {
		k, v string
		max  int
	}{
		{"listener", ev.Listener, 64},
		{"service", ev.Service, 64},
		{"user", ev.User, 128},
		{"detail", ev.Detail, 256},
	} {
		if f.v != "" {
			b.WriteString(" " + f.k + "=" + field(f.v, f.max))
		}
	}
	return b.String()
}

// field clips s and quotes it if it would not read as one token.
func field(s string, max int) string {
	c := event.Clip(s, max)
	if strings.ContainsAny(c, " =\"") {
		return strconv.Quote(c)
	}
	return c
}
