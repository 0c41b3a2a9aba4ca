package turn

import (
	"cmp"
	"context"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// reservationTTL is how long a quota slot taken for an Allocate request
// waits for its allocation before it is given back (pion may fail the
// request after the quota check without telling us).
const reservationTTL = 10 * time.Second

// Allocation describes one active allocation, for the admin API.
type Allocation struct {
	ID       uint64    `json:"id"`
	Listener string    `json:"listener"`
	User     string    `json:"user"`
	Client   string    `json:"client"`
	Relay    string    `json:"relay"`
	Protocol string    `json:"protocol"` // relay transport: udp or tcp (RFC 6062)
	Created  time.Time `json:"created"`
	// Age is the allocation's age in seconds when listed.
	Age             float64 `json:"age_seconds"`
	BytesToPeer     uint64  `json:"bytes_to_peer"`
	BytesFromPeer   uint64  `json:"bytes_from_peer"`
	PacketsToPeer   uint64  `json:"packets_to_peer"`
	PacketsFromPeer uint64  `json:"packets_from_peer"`
}

// meter counts one direction of an allocation's relayed traffic and holds
// its bandwidth limiter (nil: no cap).
type meter struct {
	bytes, packets atomic.Uint64
	lim            *rate.Limiter
}

// pass counts a datagram of n bytes and reports whether it fits the cap.
func (m *meter) pass(n int) bool {
	if m.lim != nil && !m.lim.AllowN(time.Now(), n) {
		return false
	}
	m.bytes.Add(uint64(n))
	m.packets.Add(1)
	return true
}

// wait counts n stream bytes, first waiting for the cap to allow them.
func (m *meter) wait(n int) {
	if m.lim != nil {
		_ = m.lim.WaitN(context.Background(), min(n, m.lim.Burst()))
	}
	m.bytes.Add(uint64(n))
	m.packets.Add(1)
}

// alloc is the record of one allocation, from its relay socket's creation
// to its close.
type alloc struct {
	id       uint64
	listener string
	user     string
	proto    string // "udp" or "tcp"
	relay    netip.AddrPort
	created  time.Time
	closer   io.Closer // the relay socket; closing it ends the allocation

	toPeer, fromPeer meter
	fast             *fastPath // nil: no media fast path (TCP control, or not a *net.UDPConn)

	// Guarded by registry.mu.
	client  netip.AddrPort
	quota   reservation
	timer   *time.Timer
	removed bool
}

// reservation is a quota slot: counted for a user and a source.
type reservation struct {
	user    string
	src     netip.Addr
	expires time.Time
}

// relayKey identifies an allocation by its relay socket.
type relayKey struct {
	proto string
	addr  netip.AddrPort
}

// totals are the relayed counters of allocations already gone.
type totals struct {
	bytesTo, bytesFrom, pktsTo, pktsFrom uint64
}

// registry keeps the active allocations and the quota counts. Quota slots
// are taken when pion asks the QuotaHandler, carried by the allocation's
// record once its relay socket exists, and given back when that socket is
// closed.
type registry struct {
	s *Server

	mu        sync.Mutex // guards the fields below
	nextID    uint64
	byID      map[uint64]*alloc
	byRelay   map[relayKey]*alloc
	perUser   map[string]int
	perSource map[netip.Addr]int
	total     int
	pending   []reservation
	gone      totals
	byProto   map[string]int
}

func newRegistry(s *Server) *registry {
	return &registry{
		s:         s,
		byID:      make(map[uint64]*alloc),
		byRelay:   make(map[relayKey]*alloc),
		perUser:   make(map[string]int),
		perSource: make(map[netip.Addr]int),
		byProto:   make(map[string]int),
	}
}

// reserve takes a quota slot for user at src, or names the quota that is
// full ("total", "user" or "source").
func (r *registry) reserve(user string, src netip.Addr, q Quotas) (full string) {
	now := r.s.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expireLocked(now)
	switch {
	case q.Total > 0 && r.total >= q.Total:
		return "total"
	case q.PerUser > 0 && r.perUser[user] >= q.PerUser:
		return "user"
	case q.PerSource > 0 && r.perSource[src] >= q.PerSource:
		return "source"
	}
	res := reservation{user: user, src: src, expires: now.Add(reservationTTL)}
	r.countLocked(res, 1)
	r.pending = append(r.pending, res)
	return ""
}

// expireLocked gives back reservations whose allocation never came.
func (r *registry) expireLocked(now time.Time) {
	kept := r.pending[:0]
	for _, res := range r.pending {
		if now.After(res.expires) {
			r.countLocked(res, -1)
			continue
		}
		kept = append(kept, res)
	}
	clear(r.pending[len(kept):])
	r.pending = kept
}

func (r *registry) countLocked(res reservation, d int) {
	r.total += d
	if r.perUser[res.user] += d; r.perUser[res.user] <= 0 {
		delete(r.perUser, res.user)
	}
	if r.perSource[res.src] += d; r.perSource[res.src] <= 0 {
		delete(r.perSource, res.src)
	}
}

// takeLocked removes and returns the oldest pending reservation of user.
func (r *registry) takeLocked(user string) (reservation, bool) {
	for i, res := range r.pending {
		if res.user == user {
			r.pending = slices.Delete(r.pending, i, i+1)
			return res, true
		}
	}
	return reservation{}, false
}

// unreserve gives back user's oldest reservation: its relay socket could
// not be opened.
func (r *registry) unreserve(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res, ok := r.takeLocked(user); ok {
		r.countLocked(res, -1)
	}
}

// add records a new relay socket. The allocation's client is known only
// when pion reports it (created).
func (r *registry) add(user, listener, proto string, relay netip.AddrPort, closer io.Closer, lim func() *rate.Limiter, fast *fastPath) *alloc {
	a := &alloc{user: user, listener: listener, proto: proto, relay: relay, created: r.s.now(), closer: closer, fast: fast}
	if lim != nil {
		a.toPeer.lim, a.fromPeer.lim = lim(), lim()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nextID++
	a.id = r.nextID
	if res, ok := r.takeLocked(user); ok {
		a.quota = res
	} else {
		// No quota check came first (cannot happen with pion's Allocate
		// handler); count the allocation anyway.
		a.quota = reservation{user: user}
		r.countLocked(a.quota, 1)
	}
	r.byID[a.id] = a
	r.byRelay[relayKey{proto, relay}] = a
	r.byProto[proto]++
	return a
}

// created completes a's record with its client and starts its lifetime
// cap. It returns nil when no relay socket of ours has that address.
func (r *registry) created(proto string, relay netip.AddrPort, client netip.AddrPort, maxLife time.Duration) *alloc {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.byRelay[relayKey{proto, relay}]
	if a == nil || a.removed {
		return nil
	}
	a.client = client
	if src := client.Addr(); a.quota.src != src {
		// Reservations are taken in order per user; two sources racing
		// for the same user may swap theirs. Count the real source.
		if r.perSource[a.quota.src]--; r.perSource[a.quota.src] <= 0 {
			delete(r.perSource, a.quota.src)
		}
		r.perSource[src]++
		a.quota.src = src
	}
	if maxLife > 0 {
		a.timer = time.AfterFunc(maxLife, func() { _ = a.closer.Close() })
	}
	if a.fast != nil {
		a.fast.listener.clients.add(client, a)
	}
	return a
}

// byRelayAddr returns the allocation of a relay address, or nil.
func (r *registry) byRelayAddr(proto string, relay netip.AddrPort) *alloc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byRelay[relayKey{proto, relay}]
}

// remove ends a's record and gives back its quota slot. Idempotent.
func (r *registry) remove(a *alloc) {
	r.mu.Lock()
	if a.removed {
		r.mu.Unlock()
		return
	}
	a.removed = true
	delete(r.byID, a.id)
	delete(r.byRelay, relayKey{a.proto, a.relay})
	r.byProto[a.proto]--
	r.countLocked(a.quota, -1)
	r.gone.bytesTo += a.toPeer.bytes.Load()
	r.gone.bytesFrom += a.fromPeer.bytes.Load()
	r.gone.pktsTo += a.toPeer.packets.Load()
	r.gone.pktsFrom += a.fromPeer.packets.Load()
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.fast != nil && a.client.IsValid() {
		a.fast.listener.clients.remove(a.client, a)
	}
	r.mu.Unlock()
	r.s.ports.release(int(a.relay.Port()))
}

// list describes the active allocations, oldest first.
func (r *registry) list(now time.Time) []Allocation {
	r.mu.Lock()
	out := make([]Allocation, 0, len(r.byID))
	for _, a := range r.byID {
		out = append(out, a.describeLocked(now))
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(x, y Allocation) int { return cmp.Compare(x.ID, y.ID) })
	return out
}

func (a *alloc) describeLocked(now time.Time) Allocation {
	client := ""
	if a.client.IsValid() {
		client = a.client.String()
	}
	return Allocation{
		ID: a.id, Listener: a.listener, User: a.user, Client: client,
		Relay: a.relay.String(), Protocol: a.proto, Created: a.created,
		Age:             now.Sub(a.created).Seconds(),
		BytesToPeer:     a.toPeer.bytes.Load(),
		BytesFromPeer:   a.fromPeer.bytes.Load(),
		PacketsToPeer:   a.toPeer.packets.Load(),
		PacketsFromPeer: a.fromPeer.packets.Load(),
	}
}

// end closes allocation id's relay and returns its description.
func (r *registry) end(id uint64, now time.Time) (Allocation, bool) {
	r.mu.Lock()
	a := r.byID[id]
	var d Allocation
	if a != nil {
		d = a.describeLocked(now)
	}
	r.mu.Unlock()
	if a == nil {
		return Allocation{}, false
	}
	_ = a.closer.Close()
	return d, true
}

// endFrom closes the allocations of clients inside p and returns how many.
func (r *registry) endFrom(p netip.Prefix) int {
	r.mu.Lock()
	var victims []*alloc
	for _, a := range r.byID {
		if a.client.IsValid() && p.Contains(a.client.Addr()) {
			victims = append(victims, a)
		}
	}
	r.mu.Unlock()
	for _, a := range victims {
		_ = a.closer.Close()
	}
	return len(victims)
}

// endAll closes every allocation.
func (r *registry) endAll() {
	r.mu.Lock()
	victims := make([]*alloc, 0, len(r.byID))
	for _, a := range r.byID {
		victims = append(victims, a)
	}
	r.mu.Unlock()
	for _, a := range victims {
		_ = a.closer.Close()
	}
}

// sums returns the relayed counters of all allocations, live and gone, and
// the live count per relay protocol.
func (r *registry) sums() (t totals, udp, tcp int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t = r.gone
	for _, a := range r.byID {
		t.bytesTo += a.toPeer.bytes.Load()
		t.bytesFrom += a.fromPeer.bytes.Load()
		t.pktsTo += a.toPeer.packets.Load()
		t.pktsFrom += a.fromPeer.packets.Load()
	}
	return t, r.byProto["udp"], r.byProto["tcp"]
}
