package turn

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/listen"
)

// deadlineSlack is how stale a connection's read deadline may get before a
// read renews it: renewing costs a system call, so it is not done per read.
const deadlineSlack = time.Second

// streamListener is the net.Listener pion accepts TURN-over-TCP/TLS
// connections from: the gateway's listeners hand them in with ServeConn
// once they are sniffed (and TLS terminated).
type streamListener struct {
	name string
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newStreamListener(name string) *streamListener {
	return &streamListener{
		name: name,
		addr: &net.TCPAddr{},
		ch:   make(chan net.Conn),
		done: make(chan struct{}),
	}
}

func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *streamListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *streamListener) Addr() net.Addr { return l.addr }

// hand passes c to pion. It fails when the listener is closed or ctx ends.
func (l *streamListener) hand(ctx context.Context, c net.Conn) error {
	select {
	case l.ch <- c:
		return nil
	case <-l.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// streamConn is one TURN control (or RFC 6062 data) connection. It
// enforces the idle timeout while the connection carries STUN/ChannelData
// frames, and watches the frames for REST credentials signed by an older
// secret (see restKeys). Once a ConnectionBind has made it an RFC 6062 data
// connection it passes bytes through untouched and without deadline: the
// peer's TCP stream is not framed.
type streamConn struct {
	net.Conn
	s     *Server
	l     *listener
	idle  time.Duration
	renew time.Time // when the read deadline was last set
	raw   bool      // a data connection: no framing, no idle deadline
	fr    framer
	reqs  requests
	// bindKey is the long-term key of a ConnectionBind request's user,
	// kept until its answer goes out (see Write).
	bindKey []byte

	// The access log line written at Close.
	access   *slog.Logger
	listener string
	src      netip.Addr
	start    time.Time
	once     sync.Once
	// settled: the first answer went out (listen.Settle).
	settled atomic.Bool
}

func (c *streamConn) Read(p []byte) (int, error) {
	if !c.raw && c.idle > 0 {
		if now := time.Now(); now.Sub(c.renew) > deadlineSlack {
			c.renew = now
			if err := c.Conn.SetReadDeadline(now.Add(c.idle)); err != nil {
				return 0, err
			}
		}
	}
	n, err := c.Conn.Read(p)
	if n > 0 && !c.raw {
		c.fr.feed(p[:n], c.frame)
	}
	return n, err
}

// Close closes the connection and forgets it. Idempotent. It reports no
// error: the connection is gone either way, and pion would only log a
// client that left without a TLS close_notify.
func (c *streamConn) Close() error {
	c.once.Do(func() {
		if c.l != nil {
			c.l.untrack(c)
		}
		if c.access != nil {
			c.access.LogAttrs(context.Background(), slog.LevelInfo, "connection",
				slog.String("listener", c.listener), slog.String("proto", Proto),
				slog.String("src", c.src.String()), slog.Duration("duration", time.Since(c.start)))
		}
	})
	_ = c.Conn.Close()
	return nil
}

// frame looks at one complete STUN message read from the connection.
func (c *streamConn) frame(msg []byte) {
	if stunMethod(msg) == methodConnectionBind {
		c.raw = true
		_ = c.Conn.SetReadDeadline(time.Time{})
		if user, ok := stunUsername(msg); ok {
			c.bindKey = c.s.keyOf(string(user))
		}
		return
	}
	c.reqs.note(msg)
	c.s.observe(msg)
}

// Write passes pion's answers on. pion answers a ConnectionBind without
// MESSAGE-INTEGRITY, which RFC 8489 requires on the answer to an
// authenticated request and which clients such as coturn's check: the
// answer is signed here with the key the request was checked with.
func (c *streamConn) Write(p []byte) (int, error) {
	if !c.settled.Load() {
		// The first answer: the listener's admission slot is free again
		// (an allocation's connection lasts as long as the call).
		c.settled.Store(true)
		listen.Settle(c.Conn)
	}
	if c.bindKey == nil || !isSTUN(p) || binary.BigEndian.Uint16(p[0:2]) != connectionBindSuccess {
		if !isErrorResponse(p) {
			return c.Conn.Write(p)
		}
		if _, err := c.Conn.Write(c.s.fixAnswer(p, c.Conn.RemoteAddr(), &c.reqs)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	key := c.bindKey
	c.bindKey = nil
	signed, err := signSTUN(p, key)
	if err != nil {
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(signed); err != nil {
		return 0, err
	}
	return len(p), nil
}

// STUN message framing, as far as this package needs it.
const (
	stunHeaderLen        = 20
	stunCookie           = 0x2112A442
	methodConnectionBind = 0x000b
	// connectionBindSuccess is the message type of a ConnectionBind
	// success response.
	connectionBindSuccess = 0x010b
	// maxObserved is the longest STUN message the framer keeps to look at;
	// longer ones (no authentication request is) are skipped.
	maxObserved = 2048
)

// isSTUN reports whether b starts with a STUN message header.
func isSTUN(b []byte) bool {
	return len(b) >= stunHeaderLen && b[0]&0xC0 == 0 &&
		binary.BigEndian.Uint32(b[4:8]) == stunCookie
}

// stunMethod returns the method of the STUN message msg (0 if it is none).
func stunMethod(msg []byte) uint16 {
	if !isSTUN(msg) {
		return 0
	}
	t := binary.BigEndian.Uint16(msg[0:2])
	return t&0x000f | (t&0x00e0)>>1 | (t&0x3e00)>>2
}

// framer splits a TURN-over-TCP byte stream into frames without changing
// it: STUN messages (handed to a callback when short enough) and
// ChannelData (skipped, padded to four bytes as RFC 8656 requires over
// TCP). On bytes that are neither it stops looking: pion closes such a
// connection.
type framer struct {
	buf  []byte // the current frame's first bytes
	need int    // length of the current STUN frame; 0 while reading a header
	skip int    // bytes of the current frame still to skip
	dead bool
}

func (f *framer) feed(p []byte, onSTUN func([]byte)) {
	for len(p) > 0 && !f.dead {
		if f.skip > 0 {
			k := min(f.skip, len(p))
			f.skip -= k
			p = p[k:]
			continue
		}
		if f.need == 0 {
			// Collect a header: 4 bytes say ChannelData's length, STUN's
			// needs 20 to check the cookie.
			want := 4
			if len(f.buf) > 0 && f.buf[0]&0xC0 == 0 {
				want = stunHeaderLen
			}
			k := min(want-len(f.buf), len(p))
			f.buf = append(f.buf, p[:k]...)
			p = p[k:]
			if len(f.buf) < want {
				continue
			}
			length := int(binary.BigEndian.Uint16(f.buf[2:4]))
			switch {
			case f.buf[0]&0xC0 == 0x40: // ChannelData
				f.skip = (length + 3) &^ 3
				f.buf = f.buf[:0]
				continue
			case want == stunHeaderLen && isSTUN(f.buf):
				f.need = stunHeaderLen + length
			case want == 4 && f.buf[0]&0xC0 == 0:
				continue // a STUN header: read on to 20 bytes
			default:
				f.dead = true
				f.buf = nil
				return
			}
			if f.need > maxObserved {
				f.skip = f.need - len(f.buf)
				f.need = 0
				f.buf = f.buf[:0]
				continue
			}
		}
		k := min(f.need-len(f.buf), len(p))
		f.buf = append(f.buf, p[:k]...)
		p = p[k:]
		if len(f.buf) == f.need {
			onSTUN(f.buf)
			f.buf = f.buf[:0]
			f.need = 0
		}
	}
}
