package config

import (
	"net/netip"
	"path/filepath"
	"sort"

	"github.com/pbxgate/pbxgate/internal/event"
)

// fraud checks the fraud section.
func (k *checker) fraud() {
	f := k.c.Fraud
	k.between("fraud.suspicious_per_minute", f.SuspiciousPerMinute, 1, maxSuspicious)
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"blacklist_for", f.BlacklistFor}, {"blacklist_max", f.BlacklistMax},
		{"recidive_window", f.RecidiveWindow}, {"nat.success_window", f.NAT.SuccessWindow},
	} {
		if d.v <= 0 {
			k.add("fraud."+d.key, "must be a positive duration, got %s", d.v)
		}
	}
	if f.BlacklistFor > 0 && f.BlacklistMax > 0 && f.BlacklistMax < f.BlacklistFor {
		k.add("fraud.blacklist_max", "%s is shorter than fraud.blacklist_for (%s)", f.BlacklistMax, f.BlacklistFor)
	}
	for _, w := range []struct {
		key string
		v   *int
	}{
		{"rejected_by_gateway", f.Weights.RejectedByGateway},
		{"rejected_by_service", f.Weights.RejectedByService},
		{"backend_unreachable", f.Weights.BackendUnreachable},
	} {
		if w.v != nil {
			k.between("fraud.weights."+w.key, *w.v, 0, maxWeight)
		}
	}
	reasons := make([]string, 0, len(f.Weights.Reasons))
	for r := range f.Weights.Reasons {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		p := "fraud.weights.reasons." + r
		line := lineOr(k.c.pos, p, k.c.pos.line("fraud.weights.reasons"))
		if !event.KnownReason(r) {
			hint := ""
			if c := closest(r, event.Reasons()); c != "" {
				hint = "; did you mean " + c + "?"
			}
			k.addLine(line, p, "unknown event reason %q%s", clip(r, 64), hint)
			continue
		}
		if w := f.Weights.Reasons[r]; w < 0 || w > maxWeight {
			k.addLine(line, p, "%d is out of range 0..%d", w, maxWeight)
		}
	}
	for i, n := range f.Whitelist {
		if _, err := ParseNetwork(n); err != nil {
			k.add(indexPath("fraud.whitelist", i), "%v", err)
		}
	}
	k.between("fraud.max_sources", f.MaxSources, minMaxSources, maxMaxSources)
	k.between("fraud.nat.max_factor", f.NAT.MaxFactor, 1, maxNATMaxFactor)
	k.between("fraud.recent_events", f.RecentEvents, 1, maxRecentEvents)
	k.between("fraud.suspect_rate", f.SuspectRate, 1, maxSuspectRate)
	k.between("fraud.unproven_concurrency", f.UnprovenConcurrency, 1, maxUnprovenConc)
	if f.RefusedHold != nil {
		k.durationBetween("fraud.refused_hold", *f.RefusedHold, 0, maxRefusedHold)
	}
}

// unixPathMax is the room for a socket path in sockaddr_un on Linux.
const unixPathMax = 107

// admin checks the admin and store sections.
func (k *checker) admin() {
	a := k.c.Admin
	if a.Address != Off {
		if _, _, err := SplitHostPort(a.Address); err != nil {
			k.add("admin.address", "%v (or \"off\")", err)
		} else {
			for i, l := range k.c.Listeners {
				if sameSocket(a.Address, l.Address) {
					k.add("admin.address", "%s is also listener %s's address (line %d): the admin API never shares a socket with the proxy", a.Address, l.Name, k.c.pos.line(indexPath("listeners", i)))
				}
			}
		}
	}
	if a.Socket != Off {
		switch {
		case a.Socket == "":
			k.add("admin.socket", "required (a path, or \"off\")")
		case len(a.Socket) > unixPathMax:
			k.add("admin.socket", "path is %d bytes long; a unix socket path has room for %d", len(a.Socket), unixPathMax)
		}
	}
	if a.Address == Off && a.Socket == Off {
		k.add("admin", "admin.address and admin.socket are both off: nothing could list or lift bans")
	}
	if k.oneOf("store.backend", k.c.Store.Backend, StoreBolt) && k.c.Store.Path == "" {
		k.add("store.path", "required")
	} else if filepath.Base(k.c.Store.Path) == "." {
		k.add("store.path", "%q is not a file name", k.c.Store.Path)
	}
}

// sameSocket reports whether two host:port addresses would bind the same
// port on a shared address (the wildcard overlaps everything).
func sameSocket(a, b string) bool {
	ha, pa, err1 := SplitHostPort(a)
	hb, pb, err2 := SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == 0 {
		return false
	}
	wild := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || err == nil && ip.IsUnspecified()
	}
	return ha == hb || wild(ha) || wild(hb) || canonicalIP(ha) == canonicalIP(hb)
}
