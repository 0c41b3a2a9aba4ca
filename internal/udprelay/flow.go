package udprelay

import (
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// CloseReason says why a flow was removed.
type CloseReason uint8

const (
	// Expired: no datagram in either direction for IdleTimeout.
	Expired CloseReason = iota + 1
	// Evicted: the table was full and a new client needed the slot.
	Evicted
	// ClosedByPrefix: CloseFrom removed it (a ban).
	ClosedByPrefix
	// Shutdown: the relay stopped.
	Shutdown
)

// String returns "expired", "evicted", "closed_by_prefix" or "shutdown".
func (c CloseReason) String() string {
	switch c {
	case Expired:
		return "expired"
	case Evicted:
		return "evicted"
	case ClosedByPrefix:
		return "closed_by_prefix"
	case Shutdown:
		return "shutdown"
	}
	return "closereason(" + strconv.Itoa(int(c)) + ")"
}

// Flow is one client's path through the relay: datagrams from Client go to
// Backend through an upstream socket of their own, and whatever Backend
// sends to that socket goes back to Client.
//
// The exported fields do not change after the flow is opened. See the
// package documentation for the memory a flow costs.
type Flow struct {
	Client   netip.AddrPort // the client, unmapped
	Backend  netip.AddrPort // the routed backend
	Upstream netip.AddrPort // local address of the upstream socket; zero during the first Inspect
	Created  time.Time

	replyTo netip.AddrPort // Client as the public socket reported it (maybe v4-mapped)
	id      uint32         // key of the upstream reader
	up      *net.UDPConn   // connected to Backend
	rc      syscall.RawConn

	last        atomic.Int64 // Relay.now() in Unix nanoseconds of the last datagram either way
	fromClient  atomic.Uint64
	fromBackend atomic.Uint64
	established atomic.Bool
	unreachable atomic.Bool // an unreachable event was emitted; reset by a backend datagram

	// Guarded by Relay.mu.
	removed    bool
	prev, next *Flow // list of flows not yet established, oldest first
}

// Packets returns how many datagrams the flow has relayed from the client
// and from the backend.
func (f *Flow) Packets() (fromClient, fromBackend uint64) {
	return f.fromClient.Load(), f.fromBackend.Load()
}

// Established reports whether the client has sent a datagram after the
// backend sent one to it: the client answered, so its source address is
// very likely its own. Flows that are not established are the first to be
// evicted when the table is full.
func (f *Flow) Established() bool { return f.established.Load() }

// LastActive returns the time of the last datagram in either direction,
// on the relay's clock.
func (f *Flow) LastActive() time.Time { return time.Unix(0, f.last.Load()) }
