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
	s *Server
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
		}
		return n, from, nil
	}
}
