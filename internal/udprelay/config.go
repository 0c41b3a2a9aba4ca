package udprelay

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// Socket receive buffers. A burst arriving while the read loop is busy
// waits in the kernel instead of being dropped; the kernel's default (208
// KiB) lost REGISTERs at 24,000/s in bench/sip.sh while the CPU was half
// idle. They are limits, not allocations: memory is used only by what
// queues. The kernel caps them at net.core.rmem_max.
const (
	PublicReadBuffer   = 4 << 20 // the public socket, shared by every client
	UpstreamReadBuffer = 1 << 20 // each flow's socket (a carrier's trunk can be one busy flow)
)

// Defaults of Config.
const (
	DefaultMaxFlows    = 100000
	DefaultIdleTimeout = time.Hour
	DefaultEvictIdle   = 5 * time.Minute
	DefaultMaxDatagram = 65535
)

// bufSize holds the largest UDP payload of IPv4 and IPv6 (65507 and 65527
// bytes) with room to spare, so reads never truncate.
const bufSize = 1 << 16

// ScratchSize is the length of the scratch buffer handed to Inspect: room
// for a rewritten datagram and a reply of the largest size each.
const ScratchSize = 2 * bufSize

// Verdict is Inspect's decision about one datagram.
type Verdict struct {
	// Forward is what to relay: the datagram itself, a rewrite of it, or
	// nil to drop it.
	Forward []byte
	// Reply, if not nil, is sent back to where the datagram came from: to
	// the client through the public socket, or to the backend through the
	// flow's upstream socket. It is how a gateway answers a request it
	// refuses.
	Reply []byte
}

// Pass relays b unchanged.
func Pass(b []byte) Verdict { return Verdict{Forward: b} }

// Config is what a relay does with datagrams. It can be replaced at run time
// with Relay.Reconfigure; open flows keep their backend.
type Config struct {
	// Allowed is the guard, asked for every datagram from a client before
	// anything else (before Route, Inspect and the flow table are
	// consulted): false drops the datagram silently (no event, counted in
	// Stats.DroppedGuard). The address is unmapped. Nil allows everyone.
	// It runs on the read loop and must be fast. Datagrams from backends
	// to clients are not asked: a banned client's flow is removed with
	// CloseFrom.
	Allowed func(netip.Addr) bool
	// Route picks the backend for a new flow from the client's address
	// (unmapped) and its first datagram. It is called only for a datagram
	// that has no flow yet; false drops the datagram (Stats.DroppedRoute)
	// and Route is expected to emit the event the refusal deserves. It
	// must not keep first. It runs on the read loop and must be fast.
	// Required.
	Route func(src netip.AddrPort, first []byte) (backend netip.AddrPort, ok bool)
	// Inspect, if set, sees every datagram about to be relayed, in both
	// directions, and says what to do with it (see Verdict): relay it as
	// is, relay a rewrite, drop it (Stats.DroppedInspect) and/or send a
	// reply back to where it came from. For the first datagram of a flow it
	// runs before the upstream socket is opened (f.Upstream is zero then)
	// and a nil Forward means no flow is created; a datagram Inspect
	// accepted may still be dropped (table full, socket error).
	//
	// scratch is a buffer of ScratchSize bytes owned by the calling
	// goroutine until Inspect returns: rewrites and replies are built in
	// it. Inspect is called concurrently from the read loop (fromClient)
	// and the upstream reader, must be safe for concurrent use and must
	// keep neither b nor scratch.
	Inspect func(f *Flow, b []byte, fromClient bool, scratch []byte) Verdict
	// OnClose, if set, is called once for every flow that was opened, after
	// it is removed (expired, evicted, CloseFrom, shutdown), outside the
	// relay's locks.
	OnClose func(f *Flow, why CloseReason)
	// MaxFlows caps the flow table. When it is full, a datagram from a new
	// client evicts, in this order: the oldest flow that never got past
	// its first exchange (see Flow.Established); else the idlest of a
	// sample of established flows, if it has been idle for EvictIdle or
	// more; else the new flow is refused (event ReasonConnLimit). So a
	// flood from (spoofed) new sources churns only among flows without a
	// traffic history and never evicts an active registration. Default
	// (0) 100000.
	MaxFlows int
	// IdleTimeout removes a flow that has carried no datagram in either
	// direction for this long. It must cover the clients' re-registration
	// interval so that requests from the backend (incoming calls) still
	// find the flow. Default (0) 1h.
	IdleTimeout time.Duration
	// EvictIdle is how long an established flow must have been idle
	// before it may be evicted to make room when the table is full.
	// Default (0) 5m; it is capped at IdleTimeout.
	EvictIdle time.Duration
	// MaxDatagram is the largest datagram relayed, 1..65535; larger ones
	// are dropped (Stats.DroppedOversize; from a client also an event
	// ReasonBadRequest). Default (0) 65535.
	MaxDatagram int
	// UpstreamLocals are the local addresses of upstream sockets (ports
	// chosen by the kernel). Every flow needs a local port of its own
	// toward its backend, so one address carries at most as many flows
	// per backend as the kernel's ephemeral port range has ports
	// (net.ipv4.ip_local_port_range); with several addresses, new flows
	// are spread over them and move on to the next when one runs out.
	// Empty lets the kernel choose the address.
	UpstreamLocals []netip.Addr
}

// config is a validated Config with defaults applied.
type config struct {
	Config
}

// compile validates c and applies defaults. Every problem is reported.
func compile(c Config) (*config, error) {
	var errs []error
	if c.Route == nil {
		errs = append(errs, errors.New("Route: required"))
	}
	if c.MaxFlows < 0 {
		errs = append(errs, fmt.Errorf("MaxFlows: %d is negative", c.MaxFlows))
	}
	if c.IdleTimeout < 0 {
		errs = append(errs, fmt.Errorf("IdleTimeout: %v is negative", c.IdleTimeout))
	}
	if c.EvictIdle < 0 {
		errs = append(errs, fmt.Errorf("EvictIdle: %v is negative", c.EvictIdle))
	}
	if c.MaxDatagram < 0 || c.MaxDatagram > 65535 {
		errs = append(errs, fmt.Errorf("MaxDatagram: %d is outside 1..65535", c.MaxDatagram))
	}
	for _, a := range c.UpstreamLocals {
		if !a.IsValid() || a.Zone() != "" {
			errs = append(errs, fmt.Errorf("UpstreamLocals: %v is not an address without a zone", a))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("udprelay: invalid config: %w", errors.Join(errs...))
	}
	out := &config{Config: c}
	if out.MaxFlows == 0 {
		out.MaxFlows = DefaultMaxFlows
	}
	if out.IdleTimeout == 0 {
		out.IdleTimeout = DefaultIdleTimeout
	}
	if out.EvictIdle == 0 {
		out.EvictIdle = DefaultEvictIdle
	}
	out.EvictIdle = min(out.EvictIdle, out.IdleTimeout)
	if out.MaxDatagram == 0 {
		out.MaxDatagram = DefaultMaxDatagram
	}
	out.UpstreamLocals = make([]netip.Addr, len(c.UpstreamLocals))
	for i, a := range c.UpstreamLocals {
		out.UpstreamLocals[i] = a.Unmap()
	}
	return out, nil
}

// Options are the fixed parts of a Relay.
type Options struct {
	// Name is the listener name carried by events.
	Name string
	// Proto is the protocol carried by events ("sip"); "" means "udp".
	Proto string
	// Events receives refusals and unreachable backends. Nil discards.
	Events event.Sink
	// Log receives debug lines and read errors. Nil discards. The caller
	// adds component attributes.
	Log *slog.Logger
	// Now is the clock for idle times and events. Nil means time.Now.
	// The sweeper's period uses the real clock.
	Now func() time.Time
}
