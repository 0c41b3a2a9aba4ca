package fraud

import "net/netip"

// Standing is what the engine holds for or against a source when one of
// its connections begins. The gateway serves new connections of suspects
// at a bounded rate and those of unproven sources a bounded number at a
// time, so that the attempts a flood makes before its sources are banned
// cannot crowd out the users who have logged in.
type Standing uint8

const (
	// Unproven: no user has logged in from the source within the NAT
	// window and nothing counts against it now (a source never seen, or
	// seen only with events that weigh nothing).
	Unproven Standing = iota
	// Proven: a user logged in successfully from the source within the
	// NAT window, or the source is whitelisted. Also every source while
	// counting is off.
	Proven
	// Suspect: the source's events in the current window include weighted
	// failures, and no user is known there.
	Suspect
)

// String returns "unproven", "proven" or "suspect".
func (s Standing) String() string {
	switch s {
	case Proven:
		return "proven"
	case Suspect:
		return "suspect"
	}
	return "unproven"
}

// Standing returns a's standing now. It takes one shard lock and does not
// allocate.
func (e *Engine) Standing(a netip.Addr) Standing {
	p := e.pol.Load()
	if !p.cfg.Enabled {
		return Proven
	}
	if !a.IsValid() {
		return Unproven
	}
	a = a.Unmap().WithZone("")
	if e.wl.covers(a, e.nowNanos) {
		return Proven
	}
	now := secs(e.clock())
	_, sh := e.cshardOf(hashAddr(a, e.seed))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.natLocked(a, now-p.natWindow) != nil {
		return Proven
	}
	if i := sh.lookupLocked(a); i >= 0 {
		if u, _ := sh.src[i].score(slotOf(now)); u > 0 {
			return Suspect
		}
	}
	return Unproven
}
