package turn

import (
	"net"
	"net/netip"
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

// guardPacketConn is a TURN listener's UDP socket as pion reads it: it
// drops datagrams from sources the fraud guard refuses before pion sees
// them (a source whose address cannot be read is dropped too), shows STUN
// messages to the REST key finder first, and relays ChannelData of bound
// channels itself (fastpath.go).
type guardPacketConn struct {
	net.PacketConn
	s       *Server
	udp     *net.UDPConn // PacketConn, when it is one: the fast path
	clients clients      // the fast path's allocations by client
	reqs    requests     // owned by pion's read loop of this socket
	answer  [bindingAnswerMaxLen]byte
}

func newGuardPacketConn(pc net.PacketConn, s *Server) *guardPacketConn {
	c := &guardPacketConn{PacketConn: pc, s: s}
	c.udp, _ = pc.(*net.UDPConn)
	return c
}

// ReadFrom returns the next datagram from an allowed source that is for
// pion. The loop ends when the socket fails (closed, deadline).
func (c *guardPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.udp == nil {
		return c.readFromAny(p)
	}
	for {
		n, from, err := c.udp.ReadFromUDPAddrPort(p)
		if err != nil {
			return n, nil, err
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		if !c.s.allowed(from.Addr()) {
			continue
		}
		if isChannelData(p[:n]) && c.relayToPeer(p[:n], from) {
			continue
		}
		if isBindingRequest(p[:n]) {
			_, _ = c.udp.WriteToUDPAddrPort(bindingAnswer(c.answer[:], p[:n], from), from)
			continue
		}
		c.preview(p[:n])
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// readFromAny is ReadFrom for a socket that is no *net.UDPConn.
func (c *guardPacketConn) readFromAny(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, from, err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ua.IP)
		if !ok || !c.s.allowed(ip.Unmap()) {
			continue
		}
		c.preview(p[:n])
		return n, from, nil
	}
}

// preview shows a datagram for pion to the REST key finder and the answer
// fixer first.
func (c *guardPacketConn) preview(msg []byte) {
	if len(msg) > 0 && msg[0]&0xC0 == 0 { // a STUN message, not ChannelData
		c.s.observe(msg)
		if isSTUN(msg) {
			c.reqs.note(msg)
		}
	}
}

// WriteTo sends pion's answers and relayed data to a client, correcting
// the error codes pion gets wrong (see fixAnswer).
func (c *guardPacketConn) WriteTo(p []byte, to net.Addr) (int, error) {
	q := c.s.fixAnswer(p, to, &c.reqs)
	if _, err := c.PacketConn.WriteTo(q, to); err != nil {
		return 0, err
	}
	return len(p), nil
}
