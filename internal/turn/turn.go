// Package turn is pbxgate's STUN/TURN server: pion/turn v5 with pbxgate's
// safety defaults, serving on sockets and connections handed in by the
// gateway.
//
// What it adds to pion:
//   - Authentication from static users (long-term keys, never clear
//     passwords) and TURN REST API credentials (internal/turnauth) with
//     several secrets for rotation: pion's AuthHandler returns one key, so
//     requests carrying a REST username are checked against every secret's
//     key before pion sees them (restkeys.go).
//   - A fraud guard: datagrams from sources the guard refuses are dropped
//     before pion parses them (TCP/TLS connections are refused at accept by
//     the gateway's listeners); CloseFrom ends a banned source's
//     allocations at once.
//   - A peer filter (internal/peerfilter) on CreatePermission, ChannelBind
//     and RFC 6062 Connect, and again on every datagram sent to a peer, so
//     the relay cannot reach loopback, private, metadata or other special
//     ranges unless the operator opens them.
//   - Quotas (allocations per user, per source and in total), a lifetime cap
//     per allocation, a best-effort bandwidth cap per allocation and
//     direction, and relay ports from a fixed range, for IPv4 and IPv6
//     (RFC 6156), UDP and TCP (RFC 6062) relays.
//   - Security events: failed authentication (unknown, malformed or expired
//     user, wrong MESSAGE-INTEGRITY) as RejectedByService/invalid_credentials,
//     a refused peer as RejectedByGateway/peer_denied, a new allocation as
//     Success. The first 401 challenge of a request without credentials is the
//     normal start of every login and is not an event.
//   - Metrics, and a list of active allocations that can end one.
//
// Each listener gets a pion server of its own, so that events name their
// listener. The package does not parse configuration files or open the
// listening sockets; the gateway does.
package turn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/peerfilter"
	"github.com/pbxgate/pbxgate/internal/turnauth"
)

// Proto is the event Proto of this package.
const Proto = "turn"

// Default relay port range (the IANA dynamic range).
const (
	DefaultPortMin uint16 = 49152
	DefaultPortMax uint16 = 65535
)

// Config is what the server is started with; it cannot change while the
// server runs. New copies what it needs; the caller may reuse the value.
type Config struct {
	// Realm is the long-term credential realm. Required.
	Realm string
	// PublicAddrs are the relay addresses advertised to clients: at most
	// one IPv4 and one IPv6 (the public side of a 1:1 NAT, or the host's
	// own). At least one is required; a family without one has no relays.
	PublicAddrs []netip.Addr
	// RelayAddrs are the local addresses relay sockets bind, at most one per
	// family of PublicAddrs. Default: the unspecified address (0.0.0.0, ::).
	RelayAddrs []netip.Addr
	// PortMin and PortMax bound the relay ports (inclusive). Zero means
	// DefaultPortMin and DefaultPortMax.
	PortMin, PortMax uint16
	// Allowed is the fraud guard: false drops a source's datagrams before
	// parsing. Nil allows all.
	Allowed func(netip.Addr) bool
	// Settings are the initial reloadable settings.
	Settings Settings
}

// Settings are what Reconfigure may change while allocations live. They
// apply to requests from then on; allocations keep their bandwidth cap and
// lifetime cap.
type Settings struct {
	// Users are static users: username -> long-term key
	// (turnauth.LongTermKey(username, realm, password)). Never a clear password.
	Users map[string][]byte
	// Secrets checks TURN REST API credentials ("<expiry>:<user>"). Nil turns
	// REST credentials off.
	Secrets *turnauth.Secrets
	// AllowPeers opens special-purpose peer ranges (see peerfilter.New).
	AllowPeers []netip.Prefix
	// Quotas bound allocations.
	Quotas Quotas
	// IdleTimeout closes a TCP/TLS control connection that sends nothing
	// for this long. 0: never.
	IdleTimeout time.Duration
	// Access receives one "connection" line per TCP/TLS connection when it
	// closes (listener, proto, src, duration). nil: none.
	Access *slog.Logger
}

// Quotas bound allocations. Zero values mean no limit.
type Quotas struct {
	PerUser   int // allocations per user (a REST credential's user part included)
	PerSource int // allocations per client IP address
	Total     int // allocations on the server
	// MaxLifetime ends an allocation this long after its creation, however
	// often it is refreshed.
	MaxLifetime time.Duration
	// MaxKbps caps each allocation's relayed payload per direction, in
	// kilobits per second (best effort: UDP datagrams over the cap are
	// dropped, TCP relays are slowed down).
	MaxKbps int
}

// settings are Settings compiled.
type settings struct {
	users       map[string][]byte
	secrets     *turnauth.Secrets
	filter      *peerfilter.Filter
	quotas      Quotas
	idleTimeout time.Duration
	access      *slog.Logger
}

// Options are the server's collaborators.
type Options struct {
	Events  event.Sink       // nil: event.Discard
	Log     *slog.Logger     // nil: slog.Default()
	Now     func() time.Time // nil: time.Now
	Metrics *Metrics         // nil: none
}

// Server is a STUN/TURN server. Create it with New, give it sockets with
// ServePacket and connections with Stream, stop it with Close.
type Server struct {
	realm   string
	v4, v6  family
	ports   *portRange
	allowed func(netip.Addr) bool
	events  event.Sink
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics
	set     atomic.Pointer[settings]
	reg     *registry
	rest    restKeys
	fixes   fixes

	mu        sync.Mutex           // guards the fields below
	listeners map[string]*listener // TCP/TLS, by listener name
	packets   map[*listener]struct{}
	closed    bool
}

// listener is one listener's pion server.
type listener struct {
	pion   *pionturn.Server
	stream *streamListener // nil for a UDP socket

	mu    sync.Mutex // guards conns
	conns map[*streamConn]struct{}
}

// New checks c and returns a server that serves nothing yet. It has no side
// effects.
func New(c Config, o Options) (*Server, error) {
	var errs []error
	if c.Realm == "" {
		errs = append(errs, errors.New("realm: required"))
	}
	s := &Server{
		realm:     c.Realm,
		allowed:   c.Allowed,
		events:    o.Events,
		log:       o.Log,
		now:       o.Now,
		metrics:   o.Metrics,
		listeners: make(map[string]*listener),
		packets:   make(map[*listener]struct{}),
	}
	errs = append(errs, s.families(c.PublicAddrs, c.RelayAddrs)...)
	portMin, portMax := c.PortMin, c.PortMax
	if portMin == 0 {
		portMin = DefaultPortMin
	}
	if portMax == 0 {
		portMax = DefaultPortMax
	}
	if portMin > portMax {
		errs = append(errs, fmt.Errorf("port range: min %d > max %d", portMin, portMax))
	}
	st, err := compile(c.Settings)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	s.ports = newPortRange(portMin, portMax)
	s.set.Store(st)
	if s.allowed == nil {
		s.allowed = func(netip.Addr) bool { return true }
	}
	if s.events == nil {
		s.events = event.Discard
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With(slog.String("component", "turn"))
	if s.now == nil {
		s.now = time.Now
	}
	s.reg = newRegistry(s)
	s.metrics.attach(s)
	return s, nil
}

// families checks and sets the public and relay addresses per family.
func (s *Server) families(public, relay []netip.Addr) []error {
	var errs []error
	if len(public) == 0 {
		errs = append(errs, errors.New("public address: at least one required"))
	}
	for _, a := range public {
		a = a.Unmap()
		f := &s.v4
		if a.Is6() {
			f = &s.v6
		}
		switch {
		case !a.IsValid() || a.IsUnspecified():
			errs = append(errs, fmt.Errorf("public address %s: not a usable address", a))
		case f.public.IsValid():
			errs = append(errs, fmt.Errorf("public address %s: a second one of its family (%s)", a, f.public))
		default:
			f.public = a
		}
	}
	for _, a := range relay {
		a = a.Unmap()
		f := &s.v4
		if a.Is6() {
			f = &s.v6
		}
		switch {
		case !a.IsValid():
			errs = append(errs, errors.New("relay address: invalid"))
		case !f.public.IsValid():
			errs = append(errs, fmt.Errorf("relay address %s: no public address of its family", a))
		case f.bind.IsValid():
			errs = append(errs, fmt.Errorf("relay address %s: a second one of its family (%s)", a, f.bind))
		default:
			f.bind = a
		}
	}
	if s.v4.public.IsValid() && !s.v4.bind.IsValid() {
		s.v4.bind = netip.IPv4Unspecified()
	}
	if s.v6.public.IsValid() && !s.v6.bind.IsValid() {
		s.v6.bind = netip.IPv6Unspecified()
	}
	return errs
}

func compile(c Settings) (*settings, error) {
	var errs []error
	users := make(map[string][]byte, len(c.Users))
	for name, key := range c.Users {
		if name == "" || len(key) == 0 {
			errs = append(errs, fmt.Errorf("users: %q: empty name or key", name))
			continue
		}
		users[name] = append([]byte(nil), key...)
	}
	filter, err := peerfilter.New(c.AllowPeers)
	if err != nil {
		errs = append(errs, fmt.Errorf("allow_peers: %w", err))
	}
	q := c.Quotas
	if q.PerUser < 0 || q.PerSource < 0 || q.Total < 0 || q.MaxLifetime < 0 || q.MaxKbps < 0 || c.IdleTimeout < 0 {
		errs = append(errs, errors.New("quotas and timeouts: negative value"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &settings{users: users, secrets: c.Secrets, filter: filter, quotas: q, idleTimeout: c.IdleTimeout, access: c.Access}, nil
}

func (s *Server) settings() *settings { return s.set.Load() }

// Reconfigure replaces the reloadable settings. On error nothing changes.
func (s *Server) Reconfigure(c Settings) error {
	st, err := compile(c)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	s.set.Store(st)
	return nil
}

// ServePacket serves STUN/TURN on a UDP socket as listener name and
// returns what stops it: closing it closes pc and ends the allocations made
// through it. The server owns pc from then on (also when ServePacket
// fails); Close stops it too. Several sockets may carry one name (a reload
// moving a listener to a new address serves the new socket before the old
// one is closed).
func (s *Server) ServePacket(name string, pc net.PacketConn) (io.Closer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = pc.Close()
		return nil, ErrClosed
	}
	sizeBuffers(pc)
	gpc := newGuardPacketConn(pc, s)
	cfg := s.pionConfig(name)
	cfg.PacketConnConfigs = []pionturn.PacketConnConfig{{
		PacketConn:            gpc,
		RelayAddressGenerator: relays{s: s, listener: name, pc: gpc},
		PermissionHandler:     s.permit(name),
	}}
	srv, err := pionturn.NewServer(cfg)
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("turn: listener %s: %w", name, err)
	}
	l := &listener{pion: srv}
	s.packets[l] = struct{}{}
	return packetListener{s: s, l: l, name: name}, nil
}

// ListenerBuffer is the receive and send buffer asked for a UDP listener
// socket: every client's datagrams share it, and the kernel's default
// (about 208 KiB) overflows in bursts of a few thousand media streams. The
// kernel caps it at net.core.rmem_max / wmem_max.
const ListenerBuffer = 4 << 20

// sizeBuffers sets a UDP listener's socket buffers, best effort.
func sizeBuffers(pc net.PacketConn) {
	type buffers interface {
		SetReadBuffer(int) error
		SetWriteBuffer(int) error
	}
	if b, ok := pc.(buffers); ok {
		_ = b.SetReadBuffer(ListenerBuffer)
		_ = b.SetWriteBuffer(ListenerBuffer)
	}
}

// packetListener stops one ServePacket.
type packetListener struct {
	s    *Server
	l    *listener
	name string
}

// Close closes the socket; pion ends its allocations. Idempotent.
func (p packetListener) Close() error {
	p.s.mu.Lock()
	_, live := p.s.packets[p.l]
	delete(p.s.packets, p.l)
	p.s.mu.Unlock()
	if !live {
		return nil
	}
	if err := p.l.close(); err != nil {
		return fmt.Errorf("turn: close listener %s: %w", p.name, err)
	}
	return nil
}

// StreamHandler serves TURN-over-TCP (or TLS, terminated by the caller)
// connections of one listener.
type StreamHandler struct {
	s    *Server
	name string
}

// Stream returns the handler of listener name's connections. Its pion
// server starts with the first connection.
func (s *Server) Stream(name string) StreamHandler { return StreamHandler{s: s, name: name} }

// ServeConn hands c, from src, to the TURN server. It returns at once; the
// server closes c when the client leaves, the connection idles out, or the
// server stops.
func (h StreamHandler) ServeConn(ctx context.Context, c net.Conn, src netip.Addr) error {
	l, err := h.s.streamListener(h.name)
	if err != nil {
		return err
	}
	st := h.s.settings()
	sc := &streamConn{Conn: c, s: h.s, idle: st.idleTimeout, access: st.access, listener: h.name, src: src, start: time.Now()}
	l.track(sc)
	if err := l.stream.hand(ctx, sc); err != nil {
		l.untrack(sc)
		return err
	}
	return nil
}

// streamListener returns listener name's pion server for connections,
// starting it on first use.
func (s *Server) streamListener(name string) (*listener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if l := s.listeners[name]; l != nil {
		return l, nil
	}
	sl := newStreamListener(name)
	l := &listener{stream: sl, conns: make(map[*streamConn]struct{})}
	cfg := s.pionConfig(name)
	cfg.ListenerConfigs = []pionturn.ListenerConfig{{
		Listener:              sl,
		RelayAddressGenerator: relays{s: s, listener: name},
		PermissionHandler:     s.permit(name),
	}}
	srv, err := pionturn.NewServer(cfg)
	if err != nil {
		return nil, fmt.Errorf("turn: listener %s: %w", name, err)
	}
	l.pion = srv
	s.listeners[name] = l
	return l, nil
}

func (l *listener) track(c *streamConn) {
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	c.l = l
}

func (l *listener) untrack(c *streamConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// close stops the listener's pion server and closes its connections.
func (l *listener) close() error {
	err := l.pion.Close()
	if l.stream != nil {
		_ = l.stream.Close()
		l.mu.Lock()
		conns := make([]*streamConn, 0, len(l.conns))
		for c := range l.conns {
			conns = append(conns, c)
		}
		l.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	return err
}

// Close stops every listener and ends every allocation. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := s.listeners
	s.listeners = nil
	ps := s.packets
	s.packets = nil
	s.mu.Unlock()
	var errs []error
	for name, l := range ls {
		if err := l.close(); err != nil {
			errs = append(errs, fmt.Errorf("listener %s: %w", name, err))
		}
	}
	for l := range ps {
		if err := l.close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.reg.endAll()
	if len(errs) > 0 {
		return fmt.Errorf("turn: close: %w", errors.Join(errs...))
	}
	return nil
}

// Allocations lists the active allocations, oldest first.
func (s *Server) Allocations() []Allocation { return s.reg.list(s.now()) }

// End ends allocation id and returns what it was; false if there is none.
func (s *Server) End(id uint64) (Allocation, bool) { return s.reg.end(id, s.now()) }

// CloseFrom ends the allocations of clients inside p (a ban) and returns
// how many. Their TCP/TLS control connections are the gateway listener's
// to close.
func (s *Server) CloseFrom(p netip.Prefix) int { return s.reg.endFrom(p) }

// pionConfig is the part of a pion server's configuration shared by all
// listeners; name is the listener's.
func (s *Server) pionConfig(name string) pionturn.ServerConfig {
	return pionturn.ServerConfig{
		Realm:         s.realm,
		AuthHandler:   s.authenticate(name),
		QuotaHandler:  s.quota(name),
		LoggerFactory: pionLogs{log: s.log.With(slog.String("listener", name))},
		EventHandler: pionturn.EventHandler{
			OnAuth:              s.onAuth(name),
			OnAllocationCreated: s.onAllocationCreated(name),
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	}
}

// authenticate is pion's AuthHandler: it returns the long-term key for the
// username. pion then checks MESSAGE-INTEGRITY with it and reports the
// verdict to onAuth. It is called only for requests carrying credentials,
// so the first 401 challenge never reaches it.
func (s *Server) authenticate(listener string) pionturn.AuthHandler {
	return func(ra *pionturn.RequestAttributes) (string, []byte, bool) {
		st := s.settings()
		if key, ok := st.users[ra.Username]; ok {
			return ra.Username, key, true
		}
		detail, reason := "unknown user", "unknown_user"
		if st.secrets != nil && strings.Contains(ra.Username, ":") {
			if key := s.keyOf(ra.Username); key != nil {
				return userOf(ra.Username), key, true
			}
			_, err := st.secrets.Keys(ra.Username, s.realm, s.now())
			reason = restReason(err)
			detail = "REST credential: " + reason
			if err != nil {
				detail = "REST credential: " + event.Clip(err.Error(), 160)
			}
		}
		s.authFailed(listener, ra.SrcAddr, ra.Username, reason, detail)
		return "", nil, false
	}
}

// userOf is the user a username names: the user part of a REST username
// ("1735689600:alice" → "alice"), else the username itself. Quotas, the
// allocation list and events (so fraud detection's per-user view) use it.
func userOf(username string) string {
	expiry, user, ok := strings.Cut(username, ":")
	if !ok || expiry == "" || strings.Trim(expiry, "0123456789") != "" {
		return username
	}
	return user
}

// restReason names why a REST username was refused, for metrics and events.
func restReason(err error) string {
	switch {
	case errors.Is(err, turnauth.ErrExpired):
		return "expired"
	case errors.Is(err, turnauth.ErrMalformed):
		return "malformed"
	}
	return "unknown_user"
}

// onAuth receives pion's verdict after the MESSAGE-INTEGRITY check; a false
// verdict is a wrong password.
func (s *Server) onAuth(listener string) func(src, dst net.Addr, proto, username, realm, method string, verdict bool) {
	return func(src, _ net.Addr, _, username, _, method string, verdict bool) {
		if verdict {
			return
		}
		s.authFailed(listener, src, username, "wrong_password", "wrong MESSAGE-INTEGRITY on "+method)
	}
}

// authFailed counts and reports a failed authentication of username.
func (s *Server) authFailed(listener string, src net.Addr, username, reason, detail string) {
	s.fixes.mark(src, int(stun.CodeUnauthorized))
	s.metrics.authFailure(reason)
	s.emit(event.Event{
		Kind:     event.RejectedByService,
		Source:   sourceOf(src),
		Listener: listener,
		Reason:   event.ReasonInvalidCreds,
		User:     event.Clip(userOf(username), 128),
		Detail:   detail + " (username " + event.Clip(username, 160) + ")",
	})
}

// quota is pion's QuotaHandler: it takes a quota slot for the allocation
// about to be created, or refuses (pion answers 486).
func (s *Server) quota(listener string) pionturn.QuotaHandler {
	return func(user, _ string, src net.Addr) bool {
		full := s.reg.reserve(user, sourceOf(src), s.settings().quotas)
		if full == "" {
			return true
		}
		s.metrics.quotaFull(full)
		s.log.Debug("allocation refused: quota full", "quota", full, "user", event.Clip(user, 128),
			"src", sourceOf(src), "listener", listener)
		return false
	}
}

func (s *Server) onAllocationCreated(listener string) func(src, dst net.Addr, proto, userID, realm string, relay net.Addr, port int) {
	return func(src, _ net.Addr, _, userID, _ string, relay net.Addr, _ int) {
		client, _ := netip.ParseAddrPort(src.String())
		client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
		proto := "udp"
		if _, ok := relay.(*net.TCPAddr); ok {
			proto = "tcp"
		}
		relayAP, _ := netip.ParseAddrPort(relay.String())
		a := s.reg.created(proto, relayAP, client, s.settings().quotas.MaxLifetime)
		s.metrics.allocationCreated()
		detail := "relay " + proto + " " + relayAP.String()
		if a != nil {
			detail = fmt.Sprintf("allocation %d: %s", a.id, detail)
		}
		s.emit(event.Event{
			Kind:     event.Success,
			Source:   client.Addr(),
			Listener: listener,
			Reason:   event.ReasonOK,
			User:     event.Clip(userID, 128),
			Detail:   detail,
		})
	}
}

// permit is pion's PermissionHandler (CreatePermission, ChannelBind and
// RFC 6062 Connect).
func (s *Server) permit(listener string) pionturn.PermissionHandler {
	return func(client net.Addr, peer net.IP) bool {
		ip, _ := netip.AddrFromSlice(peer) // invalid stays invalid and is denied
		ok, reason := s.settings().filter.Check(ip)
		if ok {
			return true
		}
		s.fixes.mark(client, int(stun.CodeForbidden))
		s.metrics.peerDeniedIn(reason)
		s.emit(event.Event{
			Kind:     event.RejectedByGateway,
			Source:   sourceOf(client),
			Listener: listener,
			Reason:   event.ReasonPeerDenied,
			Detail:   "peer " + ip.Unmap().String() + ": " + reason,
		})
		return false
	}
}

func (s *Server) emit(e event.Event) {
	e.Time = s.now()
	e.Proto = Proto
	s.events.Emit(e)
}

func sourceOf(a net.Addr) netip.Addr {
	ip, _ := addrIP(a)
	return ip
}
