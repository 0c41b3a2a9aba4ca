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
// them (a source whose address cannot be read is dropped too), and shows
// STUN messages to the REST key finder first.
type guardPacketConn struct {
	net.PacketConn
	s    *Server
	reqs requests // owned by pion's read loop of this socket
}

// ReadFrom returns the next datagram from an allowed source. The loop ends
// when the socket fails (closed, deadline).
func (c *guardPacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
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
		if n > 0 && p[0]&0xC0 == 0 { // a STUN message, not ChannelData
			c.s.observe(p[:n])
			if isSTUN(p[:n]) {
				c.reqs.note(p[:n])
			}
		}
		return n, from, nil
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
