package turn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	pionturn "github.com/pion/turn/v5"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// connectTimeout bounds a TCP Connect to a peer (RFC 6062 section 5.2: at
// least 30 seconds).
const connectTimeout = 30 * time.Second

// maxPortTries bounds the binds tried for one relay port.
const maxPortTries = 64

// family is an address family's relay addresses.
type family struct {
	public netip.Addr // advertised to clients
	bind   netip.Addr // relay sockets bind here
}

// relays opens relay sockets in the configured port range for one pion
// server (one listener): it is pion's RelayAddressGenerator.
type relays struct {
	s        *Server
	listener string
	pc       *guardPacketConn // the UDP listener's socket; nil for TCP/TLS
}

var _ pionturn.RelayAddressGenerator = relays{}

func (relays) Validate() error { return nil }

// familyOf returns the relay addresses of network ("udp4", "tcp6", ...).
func (s *Server) familyOf(network string) (family, error) {
	f := s.v4
	if len(network) > 0 && network[len(network)-1] == '6' {
		f = s.v6
	}
	if !f.public.IsValid() {
		return f, fmt.Errorf("%w: %s", ErrNoRelayFamily, network)
	}
	return f, nil
}

// bind opens a relay socket of c.Network in the port range with listen
// (given host:port) and returns the relay address told to the client. On
// failure the Allocate request's quota reservation is given back.
func (r relays) bind(c pionturn.AllocateListenerConfig, listen func(addr string) error) (netip.AddrPort, error) {
	s := r.s
	f, err := s.familyOf(c.Network)
	if err == nil {
		var port int
		port, err = s.ports.open(c.RequestedPort, func(port int) error { return listen(hostPort(f.bind, port)) })
		if err == nil {
			return netip.AddrPortFrom(f.public, uint16(port)), nil
		}
	}
	s.reg.unreserve(c.UserID)
	return netip.AddrPort{}, err
}

// AllocatePacketConn opens a UDP relay socket.
func (r relays) AllocatePacketConn(c pionturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	var pc net.PacketConn
	relay, err := r.bind(c, func(addr string) (err error) {
		pc, err = listenConfig(false).ListenPacket(context.Background(), c.Network, addr)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	rc := &relayPacketConn{PacketConn: pc, s: r.s}
	var fast *fastPath
	if uc, ok := pc.(*net.UDPConn); ok && r.pc != nil && r.pc.udp != nil {
		fast = &fastPath{listener: r.pc, relay: uc}
	}
	rc.a = r.s.reg.add(c.UserID, r.listener, "udp", relay, rc, r.s.limiter(), fast)
	return rc, net.UDPAddrFromAddrPort(relay), nil
}

// AllocateListener opens a TCP relay listener (RFC 6062).
func (r relays) AllocateListener(c pionturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	var ln net.Listener
	relay, err := r.bind(c, func(addr string) (err error) {
		ln, err = listenConfig(true).Listen(context.Background(), c.Network, addr)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	rl := &relayListener{Listener: ln, s: r.s}
	rl.a = r.s.reg.add(c.UserID, r.listener, "tcp", relay, rl, r.s.limiter(), nil)
	return rl, net.TCPAddrFromAddrPort(relay), nil
}

// AllocateConn connects a TCP allocation to a peer (RFC 6062 Connect). pion
// has asked the permission handler already; the peer filter is checked
// again here so that no path reaches a denied peer.
func (r relays) AllocateConn(c pionturn.AllocateConnConfig) (net.Conn, error) {
	s := r.s
	peer, err := netip.ParseAddrPort(c.RemoteAddr.String())
	if err != nil {
		return nil, fmt.Errorf("turn: peer address %q: %w", c.RemoteAddr, err)
	}
	if ok, reason := s.settings().filter.Check(peer.Addr()); !ok {
		return nil, fmt.Errorf("%w: %s", ErrPeerDenied, reason)
	}
	f, err := s.familyOf(c.Network)
	if err != nil {
		return nil, err
	}
	// pion passes the advertised relay address; bind its port on the local
	// address (they differ behind 1:1 NAT).
	local, err := netip.ParseAddrPort(c.LocalAddr.String())
	if err != nil {
		return nil, fmt.Errorf("turn: relay address %q: %w", c.LocalAddr, err)
	}
	a := s.reg.byRelayAddr("tcp", local)
	if a == nil {
		return nil, ErrNoAllocation
	}
	d := net.Dialer{
		Timeout:   connectTimeout,
		LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(f.bind, local.Port())),
		Control:   reusePort,
	}
	conn, err := d.Dial(c.Network, peer.String())
	if err != nil {
		return nil, fmt.Errorf("turn: connect to peer: %w", err)
	}
	return &relayConn{Conn: conn, a: a}, nil
}

// limiter returns a new allocation's bandwidth limiter per direction, or
// nil without a cap.
func (s *Server) limiter() func() *rate.Limiter {
	kbps := s.settings().quotas.MaxKbps
	if kbps <= 0 {
		return nil
	}
	bps := float64(kbps) * 1000 / 8
	burst := max(int(bps/5), 64<<10) // 200 ms, at least one large datagram burst
	return func() *rate.Limiter { return rate.NewLimiter(rate.Limit(bps), burst) }
}

func hostPort(a netip.Addr, port int) string {
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

// listenConfig is the socket setup of relay sockets. TCP relays need
// SO_REUSEADDR and SO_REUSEPORT: the outgoing connections of a Connect bind
// the relay listener's own address and port.
func listenConfig(tcp bool) *net.ListenConfig {
	if tcp {
		return &net.ListenConfig{Control: reusePort}
	}
	return &net.ListenConfig{}
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// portRange hands out relay ports: a random start in the range, then the
// next free ones, skipping ports it knows are in use. The kernel has the
// last word (another process may hold a port).
type portRange struct {
	min, max int

	mu   sync.Mutex // guards used
	used map[int]int
}

func newPortRange(lo, hi uint16) *portRange {
	return &portRange{min: int(lo), max: int(hi), used: make(map[int]int)}
}

// open binds a port with bind: the requested one (EVEN-PORT / reservation,
// which must lie in the range), or a free one. It returns the port bound.
func (p *portRange) open(requested int, bind func(port int) error) (int, error) {
	if requested != 0 {
		if requested < p.min || requested > p.max {
			return 0, fmt.Errorf("%w: requested port %d outside %d-%d", ErrNoPort, requested, p.min, p.max)
		}
		if err := bind(requested); err != nil {
			return 0, fmt.Errorf("%w: %w", ErrNoPort, err)
		}
		p.hold(requested)
		return requested, nil
	}
	n := p.max - p.min + 1
	start := rand.IntN(n)
	tries := 0
	for i := 0; i < n && tries < maxPortTries; i++ {
		port := p.min + (start+i)%n
		p.mu.Lock()
		busy := p.used[port] > 0
		p.mu.Unlock()
		if busy {
			continue
		}
		tries++
		if err := bind(port); err != nil {
			continue
		}
		p.hold(port)
		return port, nil
	}
	return 0, fmt.Errorf("%w: none free in %d-%d after %d tries", ErrNoPort, p.min, p.max, tries)
}

func (p *portRange) hold(port int) {
	p.mu.Lock()
	p.used[port]++
	p.mu.Unlock()
}

func (p *portRange) release(port int) {
	p.mu.Lock()
	if p.used[port]--; p.used[port] <= 0 {
		delete(p.used, port)
	}
	p.mu.Unlock()
}

// relayPacketConn is a UDP relay socket: it counts what it relays, applies
// the bandwidth cap and checks every destination against the peer filter
// (Send indications and ChannelData reach peers through WriteTo).
type relayPacketConn struct {
	net.PacketConn
	s    *Server
	a    *alloc
	once sync.Once
}

// ReadFrom returns the next datagram from a peer within the bandwidth cap;
// datagrams over it are dropped. With the fast path, datagrams of bound
// channels never reach the caller (see readFast).
func (c *relayPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.a.fast != nil && len(p) > 4 {
		return c.readFast(p)
	}
	for {
		n, from, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, from, err
		}
		if c.a.fromPeer.pass(n) {
			return n, from, nil
		}
		c.s.metrics.bandwidthDrop()
	}
}

// WriteTo sends to a peer the filter allows, within the bandwidth cap (a
// datagram over the cap is dropped and reported as sent).
func (c *relayPacketConn) WriteTo(p []byte, to net.Addr) (int, error) {
	ua, ok := to.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("%w: %T", errUnknownAddress, to)
	}
	ip, _ := netip.AddrFromSlice(ua.IP)
	if ok, reason := c.s.settings().filter.Check(ip); !ok {
		return 0, fmt.Errorf("%w: %s", ErrPeerDenied, reason)
	}
	if !c.a.toPeer.pass(len(p)) {
		c.s.metrics.bandwidthDrop()
		return len(p), nil
	}
	return c.PacketConn.WriteTo(p, to)
}

// Close closes the socket and ends the allocation's record. Idempotent:
// the allocation is closed by whoever comes first (pion, the operator, a
// ban, the lifetime cap); later calls return nil.
func (c *relayPacketConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.PacketConn.Close()
		c.s.reg.remove(c.a)
	})
	return err
}

// relayListener is a TCP allocation's relay listener (RFC 6062): peers
// connect to it; pion checks their permission.
type relayListener struct {
	net.Listener
	s    *Server
	a    *alloc
	once sync.Once
}

// Accept wraps a peer's connection so that it is counted.
func (l *relayListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &relayConn{Conn: c, a: l.a}, nil
}

// Close closes the listener and ends the allocation's record. Idempotent,
// as relayPacketConn.Close.
func (l *relayListener) Close() error {
	var err error
	l.once.Do(func() {
		err = l.Listener.Close()
		l.s.reg.remove(l.a)
	})
	return err
}

// relayConn is a TCP allocation's connection to a peer: counted, and
// throttled (not dropped) over the bandwidth cap.
type relayConn struct {
	net.Conn
	a *alloc
}

func (c *relayConn) Read(p []byte) (int, error) {
	if c.a.fromPeer.lim != nil && len(p) > c.a.fromPeer.lim.Burst() {
		p = p[:c.a.fromPeer.lim.Burst()]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.fromPeer.wait(n)
	}
	return n, err
}

func (c *relayConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		chunk := p
		if c.a.toPeer.lim != nil && len(chunk) > c.a.toPeer.lim.Burst() {
			chunk = chunk[:c.a.toPeer.lim.Burst()]
		}
		c.a.toPeer.wait(len(chunk))
		n, err := c.Conn.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}
