package listen

import (
	"net"
	"net/netip"
)

// Guard wraps ln so that Accept returns only connections whose source
// allowed accepts; the others are closed at once, unread — on Linux, for a
// TCP listener, before a net.Conn is even made of them. For listeners
// served by something other than a Server (the admin API's net/http).
func Guard(ln net.Listener, allowed func(netip.Addr) bool) net.Listener {
	g := &guarded{Listener: ln, allowed: allowed}
	g.ga, g.raw = newGuardedAcceptor(ln, nil) // refused: closed at once
	if g.raw {
		g.Listener = g.ga // its Close closes what it made of ln too
	}
	return g
}

type guarded struct {
	net.Listener
	allowed func(netip.Addr) bool
	ga      *guardedAcceptor
	raw     bool
}

// Accept returns the next allowed connection.
func (g *guarded) Accept() (net.Conn, error) {
	if g.raw {
		return g.ga.accept(g.allowed, 0)
	}
	for {
		c, err := g.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if g.allowed(addrOf(c.RemoteAddr())) {
			return c, nil
		}
		_ = c.Close()
	}
}
