package fraud

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net/netip"
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
// and the ban is queued for the ban writers, which read its history, write
// it to the store and log it.
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
	// banWriters write automatic bans concurrently, so that the store can
	// commit many in one transaction (bbolt's Batch does).
	banWriters = 128
)

// queueBan hands b, already counted in pending, to the ban writers.
func (e *Engine) queueBan(b pendingBan) {
	e.startBanned.Do(func() {
		e.banWG.Add(banWriters)
		for range banWriters {
			go func() {
				defer e.banWG.Done()
				for b := range e.banq {
					e.finishAutoBan(b.p, b.addr, b.at, b.v)
					e.pendingMu.Lock()
					if e.pending--; e.pending == 0 {
						e.drained.Broadcast()
					}
					e.pendingMu.Unlock()
				}
			}()
		}
	})
	done := func() {
		e.pendingMu.Lock()
		if e.pending--; e.pending == 0 {
			e.drained.Broadcast()
		}
		e.pendingMu.Unlock()
	}
	e.banqMu.RLock()
	defer e.banqMu.RUnlock()
	if e.banqClosed {
		done() // Close has closed the queue: the ban stays in memory only
		return
	}
	select {
	case e.banq <- b:
	default:
		done()
		e.banQueueFull.Add(1)
		e.storeFailed("queue ban", hostPrefix(b.addr), errBanQueueFull)
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

// finishAutoBan completes an automatic ban already in force in the guard
// (a ban writer runs it): escalation level from the store, the entry with
// reason and evidence, persistence, one log line.
func (e *Engine) finishAutoBan(p *policy, a netip.Addr, at time.Time, v verdict) {
	// Not e.ctx: Close lets the writers finish what is queued.
	ctx, cancel := context.WithTimeout(context.Background(), banWriteTimeout)
	defer cancel()
	pfx := hostPrefix(a)
	level := 1
	if hist, err := e.st.RecordBan(ctx, a, at, p.cfg.RecidiveWindow); err != nil {
		e.storeFailed("record ban", pfx, err)
	} else {
		level = max(hist.Bans, 1)
	}
	d := banDuration(&p.cfg, level)
	reason, evidence := e.describe(p, a, at, v)
	ent := store.Entry{
		List:      store.Blacklist,
		Prefix:    pfx,
		Origin:    store.Auto,
		Reason:    reason,
		Evidence:  evidence,
		Created:   at,
		FirstSeen: v.first,
		LastSeen:  v.last,
		Count:     v.total,
		Expires:   at.Add(d),
		Level:     level,
	}
	e.persistMu.RLock()
	stripe := &e.banStripes[hashAddr(a, e.seed)%uint64(len(e.banStripes))]
	stripe.Lock()
	// An operator may have lifted the ban meanwhile; then it stays lifted.
	live := e.guard.set(pfx, nanos(ent.Expires), true)
	if live {
		if err := e.st.Put(ctx, ent); err != nil {
			e.storeFailed("write ban", pfx, err)
		}
	}
	stripe.Unlock()
	e.persistMu.RUnlock()
	if !live {
		return
	}
	e.autoBans.Add(1)
	e.log.LogAttrs(context.Background(), slog.LevelWarn, "source banned",
		slog.String("src", a.String()),
		slog.Duration("for", d),
		slog.Int("level", level),
		slog.String("origin", store.Auto.String()),
		slog.String("reason", reason))
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
