package admin

import (
	"context"
	"fmt"
	"net"
)

// peerKey keys the peerInfo of a unix socket connection in its context.
type peerKey struct{}

// peerInfo is who is on the other end of a unix socket connection.
type peerInfo struct {
	uid int
	err error // the credentials could not be read
}

// peerContext is the http.Server ConnContext of the unix socket.
func peerContext(ctx context.Context, c net.Conn) context.Context {
	pi := peerInfo{uid: -1}
	if uc, ok := c.(*net.UnixConn); ok {
		pi.uid, pi.err = peerUID(uc)
	} else {
		pi.err = fmt.Errorf("not a unix socket connection (%T)", c)
	}
	return context.WithValue(ctx, peerKey{}, pi)
}

// checkPeer returns why the socket peer may not use the API, or "".
func (s *Server) checkPeer(ctx context.Context) string {
	pi, ok := ctx.Value(peerKey{}).(peerInfo)
	switch {
	case !ok:
		return "forbidden: unknown peer"
	case pi.err != nil:
		return "forbidden: cannot read peer credentials"
	case !s.trusted(pi.uid):
		return fmt.Sprintf("forbidden: uid %d is neither root nor the user pbxgate runs as", pi.uid)
	}
	return ""
}
