package fraud

import "net/netip"

// Suspect reports whether a is under suspicion now: its events in the
// current window include weighted failures not explained by a user known
// at a, and no user is known there. Whitelisted and unseen sources are not
// suspects, nor is an office whose users log in. The gateway serves new
// connections of suspects at a bounded rate, so the attempts a flood makes
// before its sources are banned cannot crowd out everyone else. It takes
// one shard lock and does not allocate.
func (e *Engine) Suspect(a netip.Addr) bool {
	p := e.pol.Load()
	if !p.cfg.Enabled || !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	now := secs(e.clock())
	_, sh := e.cshardOf(hashAddr(a, e.seed))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i := sh.lookupLocked(a)
	if i < 0 {
		return false
	}
	if u, _ := sh.src[i].score(slotOf(now)); u == 0 {
		return false
	}
	return sh.natLocked(a, now-p.natWindow) == nil
}
