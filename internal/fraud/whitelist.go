package fraud

import (
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// wlVal is what the whitelist table holds per prefix.
type wlVal struct {
	exp int64 // Unix nanoseconds, 0 = never
	cfg bool  // the configuration file lists this prefix
}

// whitelist merges the configuration file's whitelist with run-time entries
// (from the store) into one bart table, published through an atomic pointer
// so lookups take no lock.
type whitelist struct {
	mu     sync.Mutex // serialises writers; guards the fields below
	cfg    map[netip.Prefix]struct{}
	run    map[netip.Prefix]int64 // run-time entries and their expiry
	minExp int64                  // lowest run-time expiry (may be stale-low), 0 = none

	tbl atomic.Pointer[bart.Table[wlVal]]
}

func newWhitelist(cfg []netip.Prefix) *whitelist {
	w := &whitelist{run: make(map[netip.Prefix]int64)}
	w.setConfig(cfg)
	return w
}

// covers reports whether an entry in force covers a (unmapped).
func (w *whitelist) covers(a netip.Addr, now func() int64) bool {
	t := w.tbl.Load()
	v, ok := t.Lookup(a)
	if !ok {
		return false
	}
	if v.exp == 0 {
		return true
	}
	n := now()
	if !expiredAt(v.exp, n) {
		return true
	}
	for _, x := range t.Supernets(hostPrefix(a)) {
		if !expiredAt(x.exp, n) {
			return true
		}
	}
	return false
}

// covering returns the most specific entry in force covering a.
func (w *whitelist) covering(a netip.Addr, now int64) (netip.Prefix, wlVal, bool) {
	var best netip.Prefix
	var bestV wlVal
	found := false
	for p, v := range w.tbl.Load().Supernets(hostPrefix(a)) {
		if !expiredAt(v.exp, now) && (!found || p.Bits() > best.Bits()) {
			best, bestV, found = p, v, true
		}
	}
	return best, bestV, found
}

func (w *whitelist) isConfig(p netip.Prefix) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.cfg[p]
	return ok
}

// publishLocked rewrites p's merged value in the table.
func (w *whitelist) publishLocked(p netip.Prefix) {
	t := w.tbl.Load()
	_, cfg := w.cfg[p]
	exp, run := w.run[p]
	switch {
	case cfg:
		w.tbl.Store(t.InsertPersist(p, wlVal{cfg: true}))
	case run:
		w.tbl.Store(t.InsertPersist(p, wlVal{exp: exp}))
	default:
		w.tbl.Store(t.DeletePersist(p))
	}
}

// set adds or replaces a run-time entry.
func (w *whitelist) set(p netip.Prefix, exp int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.run[p] = exp
	if exp != 0 && (w.minExp == 0 || exp < w.minExp) {
		w.minExp = exp
	}
	w.publishLocked(p)
}

// remove deletes a run-time entry and reports whether there was one.
func (w *whitelist) remove(p netip.Prefix) (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	exp, ok := w.run[p]
	if ok {
		delete(w.run, p)
		w.publishLocked(p)
	}
	return exp, ok
}

// setConfig replaces the configuration file's entries (Reconfigure).
func (w *whitelist) setConfig(cfg []netip.Prefix) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = make(map[netip.Prefix]struct{}, len(cfg))
	for _, p := range cfg {
		w.cfg[p] = struct{}{}
	}
	w.rebuildLocked()
}

// replaceRun swaps every run-time entry (Load).
func (w *whitelist) replaceRun(run map[netip.Prefix]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.run = run
	w.minExp = 0
	for _, exp := range run {
		if exp != 0 && (w.minExp == 0 || exp < w.minExp) {
			w.minExp = exp
		}
	}
	w.rebuildLocked()
}

func (w *whitelist) rebuildLocked() {
	t := new(bart.Table[wlVal])
	for p, exp := range w.run {
		t.Insert(p, wlVal{exp: exp})
	}
	for p := range w.cfg {
		t.Insert(p, wlVal{cfg: true})
	}
	w.tbl.Store(t)
}

// expire removes run-time entries whose expiry is at or before now and
// returns their prefixes.
func (w *whitelist) expire(now int64) []netip.Prefix {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.minExp == 0 || w.minExp > now {
		return nil
	}
	var gone []netip.Prefix
	var low int64
	for p, exp := range w.run {
		switch {
		case exp == 0:
		case exp <= now:
			gone = append(gone, p)
		case low == 0 || exp < low:
			low = exp
		}
	}
	w.minExp = low
	for _, p := range gone {
		delete(w.run, p)
		w.publishLocked(p)
	}
	return gone
}

func (w *whitelist) size() int { return w.tbl.Load().Size() }
