package turn

import (
	"net"
	"net/netip"
	"sync"
)

// addrIP returns the unmapped IP of a socket address.
func addrIP(a net.Addr) (netip.Addr, error) {
	switch a := a.(type) {
	case *net.UDPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap(), nil
		}
	case *net.TCPAddr:
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap(), nil
		}
	case nil:
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return ap.Addr().Unmap(), nil
		}
	}
	return netip.Addr{}, errUnknownAddress
}

// guardPacketConn drops datagrams from sources the fraud guard refuses before
// pion sees them. A source whose address cannot be read is dropped too.
type guardPacketConn struct {
	net.PacketConn
	allowed func(netip.Addr) bool
}

// ReadFrom returns the next datagram from an allowed source. The loop ends
// when the socket fails (closed, deadline).
func (c *guardPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, from, err
		}
		if ip, aerr := addrIP(from); aerr == nil && c.allowed(ip) {
			return n, from, nil
		}
	}
}

// guardListener closes connections from refused sources at Accept and keeps
// the accepted ones so that Close ends them: pion's Server.Close closes only
// the listener, not the connections it accepted.
type guardListener struct {
	net.Listener
	allowed func(netip.Addr) bool

	mu     sync.Mutex // guards the fields below
	conns  map[*guardConn]struct{}
	closed bool
}

func newGuardListener(ln net.Listener, allowed func(netip.Addr) bool) *guardListener {
	return &guardListener{Listener: ln, allowed: allowed, conns: make(map[*guardConn]struct{})}
}

// Accept returns the next connection from an allowed source. The loop ends
// when the listener fails (closed).
func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ip, aerr := addrIP(c.RemoteAddr()); aerr != nil || !l.allowed(ip) {
			_ = c.Close()
			continue
		}
		gc := &guardConn{Conn: c, ln: l}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = c.Close()
			return nil, net.ErrClosed
		}
		l.conns[gc] = struct{}{}
		l.mu.Unlock()
		return gc, nil
	}
}

// Close closes the listener and every connection it accepted.
func (l *guardListener) Close() error {
	l.mu.Lock()
	l.closed = true
	conns := make([]*guardConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	err := l.Listener.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	return err
}

func (l *guardListener) forget(c *guardConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

type guardConn struct {
	net.Conn
	ln   *guardListener
	once sync.Once
}

func (c *guardConn) Close() error {
	c.once.Do(func() { c.ln.forget(c) })
	return c.Conn.Close()
}
