// Package turn is pbxgate's STUN/TURN server: pion/turn v5 with pbxgate's
// safety defaults, serving on sockets handed in by the caller.
//
// What it adds to pion:
//   - Authentication from static users (long-term keys, never clear
//     passwords) and TURN REST API credentials (internal/turnauth).
//   - A fraud guard: datagrams from sources the guard refuses are dropped
//     before pion parses them, TCP connections from them are closed at Accept.
//   - A peer filter (internal/peerfilter) on CreatePermission and ChannelBind,
//     so the relay cannot reach loopback, private, metadata or other special
//     ranges unless the operator opens them.
//   - Security events: failed authentication (unknown, malformed or expired
//     user, wrong MESSAGE-INTEGRITY) as RejectedByService/invalid_credentials,
//     a refused peer as RejectedByGateway/peer_denied, a new allocation as
//     Success. The first 401 challenge of a request without credentials is the
//     normal start of every login and is not an event.
//   - UDP relays only, in a fixed port range; TCP allocations (RFC 6062) are
//     refused.
//
// It does not do TLS listeners, quotas, metrics, configuration parsing or
// the gateway wiring; those are the caller's.
//
// Known gap: pion's AuthHandler returns one key per request, so a REST
// username is checked only against the key of the first (signing) secret;
// credentials signed by an older secret kept for rotation do not verify.
package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

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

// Config is the server's configuration. New copies what it needs; the caller
// may reuse the value.
type Config struct {
	// Realm is the long-term credential realm. Required.
	Realm string
	// PublicIP is the relay address advertised to clients (the public side of
	// a 1:1 NAT, or the host's own address). Required.
	PublicIP netip.Addr
	// RelayBind is the local address relay sockets bind to. Zero means the
	// unspecified address of PublicIP's family (0.0.0.0 or ::).
	RelayBind netip.Addr
	// PortMin and PortMax bound the relay ports (inclusive). Zero means
	// DefaultPortMin and DefaultPortMax.
	PortMin, PortMax uint16
	// Users are static users: username -> long-term key
	// (turnauth.LongTermKey(username, Realm, password)). Never a clear password.
	Users map[string][]byte
	// Secrets checks TURN REST API credentials ("<expiry>:<user>"). Nil turns
	// REST credentials off.
	Secrets *turnauth.Secrets
	// AllowPeers opens special-purpose peer ranges (see peerfilter.New).
	AllowPeers []netip.Prefix
	// Allowed is the fraud guard: false drops a source's datagrams before
	// parsing (UDP) and closes its connections at accept (TCP). Nil allows all.
	Allowed func(netip.Addr) bool
}

// Options are the server's collaborators.
type Options struct {
	Events event.Sink       // nil: event.Discard
	Log    *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

// Server is a TURN server. Create it with New, start it with Serve, stop it
// with Close.
type Server struct {
	realm     string
	publicIP  netip.Addr
	relayBind netip.Addr
	portMin   uint16
	portMax   uint16
	users     map[string][]byte
	secrets   *turnauth.Secrets
	filter    *peerfilter.Filter
	allowed   func(netip.Addr) bool
	events    event.Sink
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex // guards the fields below
	srv     *pionturn.Server
	serving bool
	closed  bool
}

// New checks c and returns a server that does not run yet. It has no side
// effects.
func New(c Config, o Options) (*Server, error) {
	var errs []error
	if c.Realm == "" {
		errs = append(errs, errors.New("realm: required"))
	}
	if !c.PublicIP.IsValid() || c.PublicIP.IsUnspecified() {
		errs = append(errs, errors.New("public_ip: required, and not the unspecified address"))
	}
	publicIP := c.PublicIP.Unmap()
	bind := c.RelayBind.Unmap()
	if !bind.IsValid() {
		if publicIP.Is6() {
			bind = netip.IPv6Unspecified()
		} else {
			bind = netip.IPv4Unspecified()
		}
	}
	if bind.IsValid() && publicIP.IsValid() && bind.Is4() != publicIP.Is4() {
		errs = append(errs, fmt.Errorf("relay_bind: %s is not of public_ip %s's address family", bind, publicIP))
	}
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
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	s := &Server{
		realm:     c.Realm,
		publicIP:  publicIP,
		relayBind: bind,
		portMin:   portMin,
		portMax:   portMax,
		users:     users,
		secrets:   c.Secrets,
		filter:    filter,
		allowed:   c.Allowed,
		events:    o.Events,
		log:       o.Log,
		now:       o.Now,
	}
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
	return s, nil
}

// Serve starts the TURN server on the sockets handed in and returns once it
// runs; it does not block. Serve takes ownership of the sockets: Close closes
// them, and so does a failed Serve. Serve may be called once.
func (s *Server) Serve(udp []net.PacketConn, tcp []net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	closeAll := func() {
		for _, c := range udp {
			_ = c.Close()
		}
		for _, l := range tcp {
			_ = l.Close()
		}
	}
	switch {
	case s.closed:
		closeAll()
		return ErrClosed
	case s.serving:
		return ErrServing
	case len(udp)+len(tcp) == 0:
		return ErrNoSockets
	}
	cfg := pionturn.ServerConfig{
		Realm:         s.realm,
		AuthHandler:   s.authenticate,
		LoggerFactory: pionLogs{log: s.log},
		EventHandler: pionturn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
		},
	}
	for _, c := range udp {
		cfg.PacketConnConfigs = append(cfg.PacketConnConfigs, pionturn.PacketConnConfig{
			PacketConn:            &guardPacketConn{PacketConn: c, allowed: s.allowed},
			RelayAddressGenerator: s.relayGenerator(),
			PermissionHandler:     s.permit,
		})
	}
	for _, l := range tcp {
		cfg.ListenerConfigs = append(cfg.ListenerConfigs, pionturn.ListenerConfig{
			Listener:              newGuardListener(l, s.allowed),
			RelayAddressGenerator: s.relayGenerator(),
			PermissionHandler:     s.permit,
		})
	}
	srv, err := pionturn.NewServer(cfg)
	if err != nil {
		// NewServer may have started read loops on the first sockets.
		for _, pc := range cfg.PacketConnConfigs {
			_ = pc.PacketConn.Close()
		}
		for _, lc := range cfg.ListenerConfigs {
			_ = lc.Listener.Close()
		}
		return fmt.Errorf("turn: start server: %w", err)
	}
	s.srv = srv
	s.serving = true
	return nil
}

// Close stops the server and closes its sockets, the connections accepted on
// them and every allocation. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("turn: close: %w", err)
	}
	return nil
}

func (s *Server) relayGenerator() pionturn.RelayAddressGenerator {
	return udpOnlyGenerator{&pionturn.RelayAddressGeneratorPortRange{
		RelayAddress: net.IP(s.publicIP.AsSlice()),
		MinPort:      s.portMin,
		MaxPort:      s.portMax,
		Address:      s.relayBind.String(),
	}}
}

// udpOnlyGenerator refuses TCP relays (RFC 6062), which this package does not
// support yet: a TCP Connect would need the same peer filtering.
type udpOnlyGenerator struct {
	*pionturn.RelayAddressGeneratorPortRange
}

func (udpOnlyGenerator) AllocateListener(pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, ErrTCPAllocation
}

func (udpOnlyGenerator) AllocateConn(pionturn.AllocateConnConfig) (net.Conn, error) {
	return nil, ErrTCPAllocation
}

// authenticate is pion's AuthHandler: it returns the long-term key for the
// username. pion then checks MESSAGE-INTEGRITY with it and reports the
// verdict to onAuth. It is called only for requests carrying credentials,
// so the first 401 challenge never reaches it.
func (s *Server) authenticate(ra *pionturn.RequestAttributes) (string, []byte, bool) {
	if key, ok := s.users[ra.Username]; ok {
		return ra.Username, key, true
	}
	detail := "unknown user"
	if s.secrets != nil && strings.Contains(ra.Username, ":") {
		keys, err := s.secrets.Keys(ra.Username, s.realm, s.now())
		if err == nil && len(keys) > 0 {
			// pion takes one key: the first secret's (see package doc).
			return ra.Username, keys[0], true
		}
		detail = "REST credential: " + errDetail(err)
	}
	s.emit(event.Event{
		Kind:   event.RejectedByService,
		Source: sourceOf(ra.SrcAddr),
		Reason: event.ReasonInvalidCreds,
		User:   event.Clip(ra.Username, 128),
		Detail: detail,
	})
	return "", nil, false
}

func errDetail(err error) string {
	switch {
	case err == nil:
		return "no key"
	case errors.Is(err, turnauth.ErrExpired):
		return "expired"
	case errors.Is(err, turnauth.ErrMalformed):
		return "malformed"
	case errors.Is(err, turnauth.ErrUnknownUser):
		return "unknown"
	}
	return event.Clip(err.Error(), 128)
}

// onAuth receives pion's verdict after the MESSAGE-INTEGRITY check; a false
// verdict is a wrong password (or a REST credential of an older secret).
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, verdict bool) {
	if verdict {
		return
	}
	s.emit(event.Event{
		Kind:   event.RejectedByService,
		Source: sourceOf(src),
		Reason: event.ReasonInvalidCreds,
		User:   event.Clip(username, 128),
		Detail: "wrong MESSAGE-INTEGRITY on " + method,
	})
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, userID, _ string, relay net.Addr, _ int) {
	detail := ""
	if relay != nil {
		detail = "relay " + relay.String()
	}
	s.emit(event.Event{
		Kind:   event.Success,
		Source: sourceOf(src),
		Reason: event.ReasonOK,
		User:   event.Clip(userID, 128),
		Detail: detail,
	})
}

// permit is pion's PermissionHandler (CreatePermission and ChannelBind).
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, _ := netip.AddrFromSlice(peer) // invalid stays invalid and is denied
	ok, reason := s.filter.Check(ip)
	if ok {
		return true
	}
	s.emit(event.Event{
		Kind:   event.RejectedByGateway,
		Source: sourceOf(client),
		Reason: event.ReasonPeerDenied,
		Detail: "peer " + ip.Unmap().String() + ": " + reason,
	})
	return false
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
