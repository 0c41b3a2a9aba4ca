package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/certs"
	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
)

// maxDetail bounds the first bytes quoted in an event.
const maxDetail = 32

// serveConn runs the pipeline of one accepted connection: sniff, TLS,
// sniff again, dispatch. It closes tc unless a handler took it.
func (s *Server) serveConn(ctx context.Context, cfg *config, tc *trackedConn, src netip.Addr) {
	h, c, proto := s.prepare(ctx, cfg, tc, src)
	if h == nil {
		_ = tc.Close()
		return
	}
	if err := h.ServeConn(ctx, c, src); err != nil {
		s.log.Debug("handler failed", "src", src, "proto", proto, "err", err)
		_ = c.Close()
	}
}

// prepare sniffs and, for TLS, terminates it. It returns the handler and the
// connection to give it, or a nil handler when the connection is refused
// (the event, if any, has been emitted).
//
// Deadlines: the client has FirstBytesTimeout to make its protocol known.
// With TLS, the handshake gets its own HandshakeTimeout, and the sniff inside
// TLS gets what the sniff of the ClientHello left of FirstBytesTimeout: the
// handshake neither eats into that budget nor extends it, so the worst case
// before dispatch is FirstBytesTimeout + HandshakeTimeout.
func (s *Server) prepare(ctx context.Context, cfg *config, tc *trackedConn, src netip.Addr) (Handler, net.Conn, sniff.Proto) {
	start := time.Now()
	if err := tc.SetReadDeadline(start.Add(cfg.FirstBytesTimeout)); err != nil {
		return nil, nil, sniff.Unknown
	}
	peeked, p, ok := s.sniff(cfg, tc, src, "")
	if !ok {
		return nil, nil, p
	}
	if cfg.Admit != nil {
		// A client that has sent nothing yet has cost no admission; one
		// that has, may wait here. The wait is not the client's: it does
		// not count against FirstBytesTimeout.
		waitStart := time.Now()
		release, ok := cfg.Admit(ctx, src)
		if !ok {
			return nil, nil, p
		}
		if release != nil {
			tc.holdRelease(release, cfg.AdmitHold)
		}
		start = start.Add(time.Since(waitStart))
	}
	if p != sniff.TLS {
		if cfg.TLSMode == TLSRequired {
			s.emit(src, p.String(), event.ReasonTLSRequired, clip(peeked))
			return nil, nil, p
		}
		raw, _ := tc.Conn.(*net.TCPConn)
		return s.dispatch(cfg, tc, src, p, &Conn{c: tc, peeked: peeked, raw: raw, tc: tc}, peeked, "")
	}

	if cfg.TLSMode == TLSNone {
		s.emit(src, p.String(), event.ReasonProtocolRefused, "TLS on a plaintext listener")
		return nil, nil, p
	}
	left := cfg.FirstBytesTimeout - time.Since(start)
	// The ClientHello is replayed to crypto/tls.
	tlsConn := tls.Server(&Conn{c: tc, peeked: peeked, tc: tc}, cfg.TLS)
	_ = tc.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if err := tlsConn.HandshakeContext(ctx); err != nil {
		reason := event.ReasonTLSHandshake
		if errors.Is(err, certs.ErrUnknownSNI) {
			reason = event.ReasonUnknownSNI
		}
		if ctx.Err() == nil {
			s.emit(src, "tls", reason, event.Clip(err.Error(), 128))
		}
		return nil, nil, p
	}
	_ = tc.SetWriteDeadline(time.Time{})

	if tlsConn.ConnectionState().NegotiatedProtocol == "h2" {
		return s.dispatch(cfg, tc, src, sniff.HTTP2, tlsConn, nil, "over TLS (ALPN h2)")
	}
	if err := tc.SetReadDeadline(time.Now().Add(max(left, 0))); err != nil {
		return nil, nil, p
	}
	peeked, p, ok = s.sniff(cfg, tlsConn, src, "tls")
	if !ok {
		return nil, nil, p
	}
	if p == sniff.TLS {
		s.emit(src, p.String(), event.ReasonProtocolRefused, "TLS inside TLS")
		return nil, nil, p
	}
	inner := &TLSConn{Conn: Conn{c: tlsConn, peeked: peeked, tc: tc}, tls: tlsConn}
	return s.dispatch(cfg, tc, src, p, inner, peeked, "over TLS")
}

// sniff reads the first bytes from r (under the deadline already set) and
// returns a private copy of them and the protocol. ok is false when the
// connection is to be closed; the event, if any, has been emitted with
// Proto outer ("unknown" when outer is "": nothing is known yet).
func (s *Server) sniff(cfg *config, r io.Reader, src netip.Addr, outer string) (peeked []byte, p sniff.Proto, ok bool) {
	bp := s.getBuf(cfg.SniffBuffer)
	buf := (*bp)[:cfg.SniffBuffer]
	n, p, err := sniff.Read(r, buf)
	if n > 0 {
		peeked = make([]byte, n)
		copy(peeked, buf[:n])
	}
	s.bufs.Put(bp)
	if p != sniff.Unknown || err == nil || errors.Is(err, sniff.ErrTooLong) {
		return peeked, p, true // decided; Unknown goes to the Fallback, if any
	}
	if outer == "" {
		outer = sniff.Unknown.String()
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.emit(src, outer, event.ReasonFirstBytesTimeout, clip(peeked))
	case n == 0:
		// Closed or reset before sending anything: health checks and
		// port scans; not worth an event.
		s.log.Debug("connection closed before sending", "src", src, "proto", outer, "err", err)
	default:
		// Gone in the middle of something we could not recognise.
		s.emit(src, outer, event.ReasonUnknownProtocol, clip(peeked))
	}
	return nil, sniff.Unknown, false
}

// dispatch chooses the handler for p and clears the read deadline. A refusal
// emits its event and returns a nil handler.
func (s *Server) dispatch(cfg *config, tc *trackedConn, src netip.Addr, p sniff.Proto, c net.Conn, peeked []byte, via string) (Handler, net.Conn, sniff.Proto) {
	h := cfg.handler(p)
	if h == nil {
		reason := event.ReasonProtocolRefused
		if p == sniff.Unknown {
			reason = event.ReasonUnknownProtocol
		}
		detail := clip(peeked)
		if via != "" {
			detail = strings.TrimSpace(detail + " " + via)
		}
		s.emit(src, p.String(), reason, detail)
		return nil, nil, p
	}
	if err := tc.SetReadDeadline(time.Time{}); err != nil {
		return nil, nil, p
	}
	return h, c, p
}

// clip quotes at most maxDetail of the first bytes for an event.
func clip(b []byte) string {
	if len(b) > maxDetail {
		b = b[:maxDetail]
	}
	return event.Clip(string(b), maxDetail)
}

// getBuf returns a pooled sniff buffer of at least size bytes.
func (s *Server) getBuf(size int) *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok && cap(*bp) >= size {
		return bp
	}
	b := make([]byte, size)
	return &b
}
