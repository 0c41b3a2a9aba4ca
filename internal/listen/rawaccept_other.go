//go:build !linux

package listen

import (
	"net"
	"net/netip"
)

type guardedAcceptor struct{ net.Listener }

// newGuardedAcceptor is Linux only; elsewhere Serve uses Accept and asks
// the guard afterwards.
func newGuardedAcceptor(net.Listener) (*guardedAcceptor, bool) { return nil, false }

func (*guardedAcceptor) accept(func(netip.Addr) bool) (net.Conn, error) {
	return nil, net.ErrClosed
}
