package listen

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// trackedConn is the innermost wrapper around an accepted socket. Its Close
// is idempotent and releases the connection's slot in the Server, so the
// count follows the socket's life whoever closes it (a handler, net/http,
// a relay, or Shutdown).
type trackedConn struct {
	net.Conn
	srv      *Server
	src      netip.Addr // the client, unmapped
	once     sync.Once
	closeErr error

	// release is what Admit returned; hold says whether it is still to
	// run (see holdRelease). holdTimer ends the hold after AdmitHold; it is
	// stopped when the connection settles or closes first, so that a
	// connection that settles in time leaves no timer behind to fire.
	release   func()
	hold      atomic.Int32
	holdTimer atomic.Pointer[time.Timer]
}

// States of trackedConn.hold.
const (
	holdNone    = iota // nothing admitted yet
	holdHolding        // release is set and still to run
	holdDone           // released, or closed before anything was held
)

// Close closes the socket and releases the slot, once. A connection that
// closes has settled.
func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.closeErr = c.Conn.Close()
		c.srv.untrack(c)
		if c.hold.Swap(holdDone) == holdHolding {
			c.stopHoldTimer()
			c.release()
		}
	})
	return c.closeErr
}

// holdRelease keeps what Admit gave the connection until it settles, it
// closes, or max (if > 0) has passed. It runs on the connection's
// goroutine; Close and Settle may run on others.
func (c *trackedConn) holdRelease(release func(), max time.Duration) {
	c.release = release
	if !c.hold.CompareAndSwap(holdNone, holdHolding) {
		release() // closed meanwhile
		return
	}
	if max > 0 {
		c.holdTimer.Store(time.AfterFunc(max, c.settle))
		if c.hold.Load() == holdDone {
			c.stopHoldTimer() // settled or closed before the timer was stored
		}
	}
}

// settle runs the admission's release once, if it is still held.
func (c *trackedConn) settle() {
	if c.hold.CompareAndSwap(holdHolding, holdDone) {
		c.stopHoldTimer()
		c.release()
	}
}

// stopHoldTimer stops the AdmitHold timer, if there is one.
func (c *trackedConn) stopHoldTimer() {
	if t := c.holdTimer.Swap(nil); t != nil {
		t.Stop()
	}
}

// CloseWrite half-closes the socket if it supports it.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return ErrNoCloseWrite
}

// Conn is the connection handed to handlers for plaintext protocols (and,
// inside a TLSConn, for TLS). Reads first return the sniffed bytes, then
// read the connection. Like net.Conn, Read must not be called from two
// goroutines at once; Peeked belongs to the reading goroutine too.
type Conn struct {
	c      net.Conn     // the stream below: the tracked socket, or a *tls.Conn
	peeked []byte       // sniffed bytes not yet returned by Read
	raw    *net.TCPConn // the socket, for plaintext TCP only
	tc     *trackedConn // the accepted socket, for Settle
}

// Read returns the sniffed bytes first, then reads the connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.peeked) > 0 {
		n := copy(p, c.peeked)
		c.peeked = c.peeked[n:]
		if len(c.peeked) == 0 {
			c.peeked = nil
		}
		return n, nil
	}
	return c.c.Read(p)
}

// Peeked returns the sniffed bytes that Read has not returned yet (all of
// them before the first Read). The slice aliases the Conn's buffer.
func (c *Conn) Peeked() []byte { return c.peeked }

// Settle tells the listener that the connection's first exchange is over
// (see Settle). Calling it again, or after Close, does nothing.
func (c *Conn) Settle() {
	if c.tc != nil {
		c.tc.settle()
	}
}

// Raw returns the TCP socket under a plaintext connection, nil for TLS or
// a listener that does not produce *net.TCPConn. A forwarder may write
// Peeked() to its backend and then copy between Raw() and the backend
// socket so the kernel can splice. Reading Raw bypasses the replay: take
// Peeked first and do not mix Raw and Read. The handler must still Close
// the Conn (not only Raw), or the listener's connection slot is never
// released.
func (c *Conn) Raw() *net.TCPConn { return c.raw }

// WriteTo writes the unread sniffed bytes to w, then copies the connection
// to w until EOF, through Raw when there is one (so io.Copy between two TCP
// sockets can splice).
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if len(c.peeked) > 0 {
		n, err := w.Write(c.peeked)
		total += int64(n)
		c.peeked = c.peeked[n:]
		if len(c.peeked) == 0 {
			c.peeked = nil
		}
		if err != nil {
			return total, err
		}
	}
	var src io.Reader = readerOnly{c.c}
	if c.raw != nil {
		src = c.raw
	}
	n, err := io.Copy(w, src)
	return total + n, err
}

// readerOnly hides WriteTo so io.Copy does not recurse into it.
type readerOnly struct{ io.Reader }

// Write writes to the connection.
func (c *Conn) Write(p []byte) (int, error) { return c.c.Write(p) }

// Close closes the connection (and with it the socket; idempotent).
func (c *Conn) Close() error { return c.c.Close() }

// CloseWrite half-closes the sending side.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("%w (%T)", ErrNoCloseWrite, c.c)
}

// LocalAddr returns the listener-side address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// RemoteAddr returns the client address.
func (c *Conn) RemoteAddr() net.Addr { return c.c.RemoteAddr() }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }

// TLSConn is the connection handed to handlers for TLS connections that did
// not negotiate HTTP/2: the decrypted stream with the sniffed plaintext
// replayed. ConnectionState makes net/http fill Request.TLS; Raw is nil.
type TLSConn struct {
	Conn
	tls *tls.Conn
}

// ConnectionState returns the TLS state (SNI, ALPN, version, ...).
func (c *TLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// CloseWrite sends close_notify, then half-closes the socket so that peers
// which ignore close_notify see EOF too. Further writes fail.
func (c *TLSConn) CloseWrite() error {
	if err := c.tls.CloseWrite(); err != nil {
		return err
	}
	if cw, ok := c.tls.NetConn().(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the *tls.Conn.
func (c *TLSConn) NetConn() net.Conn { return c.tls }

// Compile-time interface checks.
var (
	_ net.Conn    = (*Conn)(nil)
	_ io.WriterTo = (*Conn)(nil)
	_ net.Conn    = (*TLSConn)(nil)
	_ interface {
		ConnectionState() tls.ConnectionState
	} = (*TLSConn)(nil)
)
