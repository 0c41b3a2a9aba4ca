//go:build !linux

package listen

import (
	"net"
	"net/netip"
	"time"
)

type guardedAcceptor struct{ net.Listener }

// newGuardedAcceptor is Linux only; elsewhere Serve uses Accept and asks
// the guard afterwards.
func newGuardedAcceptor(net.Listener, *tarpit) (*guardedAcceptor, bool) { return nil, false }

func (*guardedAcceptor) accept(func(netip.Addr) bool, time.Duration) (net.Conn, error) {
	return nil, net.ErrClosed
}

// closeReset is Linux only: elsewhere the tarpit holds net.Conns only.
func closeReset(int) {}
