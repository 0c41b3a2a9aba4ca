package listen

import "net"

// Settle tells the listener that c's first exchange is over, so that the
// admission slot the connection held (Config.Admit) goes to the next one:
// a gateway that serves new connections of unknown sources a few at a
// time must not let a long-lived connection (a SIP phone's, a relay, a
// WebSocket) hold its slot for hours. Handlers call it once the first
// request has been answered or handed to the backend; a connection that
// closes first has settled anyway. c is the connection the handler was
// given, or a wrapper of it with a NetConn method (as *tls.Conn has);
// other connections are ignored. Safe to call more than once and from any
// goroutine.
func Settle(c net.Conn) {
	for range 8 { // wrappers of wrappers, but not a cycle
		switch x := c.(type) {
		case interface{ Settle() }:
			x.Settle()
			return
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return
		}
	}
}
