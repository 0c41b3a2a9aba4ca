// Package listen runs the accept loop of one TCP listener: it checks the
// source against the guard hook, caps concurrent connections, sniffs the
// first bytes under a deadline, terminates TLS (choosing the certificate by
// SNI through the tls.Config it is given), sniffs again inside TLS, and hands
// each connection to the handler registered for its protocol with the
// sniffed bytes replayed. Refusals are reported as events.
//
// It does not parse protocols beyond the first-bytes classification of
// package sniff, route, dial backends or relay bytes: handlers do. It does
// not load certificates (package certs does) and does not open sockets for
// its callers except through the Listen helper.
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/sniff"
)

// Handler serves one connection whose protocol has been recognised.
//
// ServeConn owns c: it must Close it eventually, itself or through whatever
// it hands c to (net/http, a relay), because the listener's connection count
// is released only when c is closed. If ServeConn returns an error the
// listener closes c (closing twice is harmless); it returns nil when it has
// closed c or handed it on. The handler has already emitted whatever events
// the error deserves; the listener only logs it at debug level.
//
// ctx is cancelled when the listener is shut down forcibly (Shutdown's
// context expired, or Serve's context ended); handlers must then return.
//
// c is a *Conn for plaintext, a *TLSConn for TLS that did not negotiate
// HTTP/2, and the *tls.Conn itself when ALPN chose "h2".
type Handler interface {
	ServeConn(ctx context.Context, c net.Conn, src netip.Addr) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c net.Conn, src netip.Addr) error

// ServeConn calls f(ctx, c, src).
func (f HandlerFunc) ServeConn(ctx context.Context, c net.Conn, src netip.Addr) error {
	return f(ctx, c, src)
}

// TLSMode says what a listener does with TLS.
type TLSMode uint8

const (
	// TLSNone: plaintext only; a TLS ClientHello is refused.
	TLSNone TLSMode = iota
	// TLSRequired: TLS only; plaintext is refused (event ReasonTLSRequired).
	TLSRequired
	// TLSOptional: TLS is terminated when the client starts it, plaintext is
	// accepted otherwise.
	TLSOptional
)

// String returns "none", "required" or "optional".
func (m TLSMode) String() string {
	switch m {
	case TLSNone:
		return "none"
	case TLSRequired:
		return "required"
	case TLSOptional:
		return "optional"
	}
	return "tlsmode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults of Config.
const (
	DefaultMaxConns          = 10000
	DefaultFirstBytesTimeout = 5 * time.Second
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultSniffBuffer       = 8192

	minSniffBuffer = 64 // enough for every decision sniff makes on sane input
	maxSniffBuffer = 64 << 10
)

// Config is what a listener does with connections. It can be replaced at
// run time with Server.Reconfigure; each connection keeps the Config it was
// accepted under.
type Config struct {
	// TLSMode: TLSNone (zero) refuses TLS, TLSRequired refuses plaintext,
	// TLSOptional takes both.
	TLSMode TLSMode
	// TLS terminates TLS (build it with certs.ServerConfig). Required unless
	// TLSMode is TLSNone; it must not be modified after New/Reconfigure.
	// For HTTP/2, include "h2" in NextProtos: connections that negotiate it
	// go to the HTTP2 (else HTTP) handler as a *tls.Conn.
	TLS *tls.Config
	// Handlers maps the protocols this listener accepts, as seen after TLS
	// termination, to their handlers. sniff.HTTP2 falls back to the
	// sniff.HTTP handler when it has none of its own. sniff.Unknown and
	// sniff.TLS are not valid keys (see Fallback and TLSMode).
	Handlers map[sniff.Proto]Handler
	// Fallback gets connections whose first bytes are no known protocol
	// (plain TCP forwarding). Nil refuses them (ReasonUnknownProtocol).
	// A client that sends nothing until the FirstBytesTimeout is refused
	// even with a Fallback: server-speaks-first protocols cannot be sniffed.
	Fallback Handler
	// MaxConns caps concurrent connections of the listener, counting every
	// connection from accept until it is closed; more are closed at once
	// (ReasonConnLimit). Default (0) 10000.
	MaxConns int
	// FirstBytesTimeout bounds how long a client may take to send enough
	// bytes to recognise its protocol (slowloris). With TLS the budget is
	// shared by the sniff before and the sniff after the handshake; the
	// handshake itself does not consume it. Default (0) 5s.
	FirstBytesTimeout time.Duration
	// HandshakeTimeout bounds the TLS handshake, counted from its start.
	// Default (0) 10s.
	HandshakeTimeout time.Duration
	// SniffBuffer is the most bytes read while undecided; a client that has
	// not been recognised by then is treated as unknown. 64 to 65536;
	// default (0) 8192.
	SniffBuffer int
	// Allowed is the guard hook, checked right after accept: false closes
	// the connection without reading a byte and without an event. Nil
	// allows everyone. It runs on the accept loop and must be fast.
	Allowed func(netip.Addr) bool
	// RefusedHold is how long a connection Allowed refuses is held open,
	// unread and unanswered, before it is closed with a reset; at most 4096
	// per listener at a time (more, and all with 0, are closed at once). A
	// refused client then waits for its own timeout, as it would for a
	// dropped SYN, instead of trying again at once.
	RefusedHold time.Duration
	// Admit runs on the connection's own goroutine once its first bytes
	// have arrived and been recognised (a client that sends nothing costs
	// no admission), before a TLS handshake or a handler, and may wait
	// (for a rate limit or a free slot, say) until ctx ends; ok false
	// closes the connection without an event. The connection counts
	// against MaxConns while it waits. A non-nil release runs once, when
	// the connection's first exchange is over: when its handler calls
	// Settle, when the connection closes, or after AdmitHold, whichever
	// comes first. Nil admits everyone at once.
	Admit func(ctx context.Context, src netip.Addr) (release func(), ok bool)
	// AdmitHold is the longest a connection keeps what Admit gave it (a
	// client that stalls mid-request, a TLS handshake over a slow link);
	// 0 for no limit.
	AdmitHold time.Duration
}

// config is a validated Config with defaults applied.
type config struct {
	Config
	handlers map[sniff.Proto]Handler // private copy, HTTP2 resolved
}

// compile validates c and applies defaults. Every problem is reported.
func compile(c Config) (*config, error) {
	var errs []error
	switch c.TLSMode {
	case TLSNone:
	case TLSRequired, TLSOptional:
		if c.TLS == nil {
			errs = append(errs, fmt.Errorf("TLS: a tls.Config is required with TLSMode %s", c.TLSMode))
		}
	default:
		errs = append(errs, fmt.Errorf("TLSMode: invalid value %d", c.TLSMode))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("MaxConns: %d is negative", c.MaxConns))
	}
	if c.FirstBytesTimeout < 0 {
		errs = append(errs, fmt.Errorf("FirstBytesTimeout: %v is negative", c.FirstBytesTimeout))
	}
	if c.RefusedHold < 0 {
		errs = append(errs, fmt.Errorf("RefusedHold: %v is negative", c.RefusedHold))
	}
	if c.HandshakeTimeout < 0 {
		errs = append(errs, fmt.Errorf("HandshakeTimeout: %v is negative", c.HandshakeTimeout))
	}
	if c.SniffBuffer != 0 && (c.SniffBuffer < minSniffBuffer || c.SniffBuffer > maxSniffBuffer) {
		errs = append(errs, fmt.Errorf("SniffBuffer: %d is outside %d..%d", c.SniffBuffer, minSniffBuffer, maxSniffBuffer))
	}
	out := &config{Config: c, handlers: make(map[sniff.Proto]Handler, len(c.Handlers)+1)}
	for p, h := range c.Handlers {
		switch {
		case p == sniff.Unknown || p == sniff.TLS:
			errs = append(errs, fmt.Errorf("Handlers: %s is not a valid key (use Fallback / TLSMode)", p))
		case h == nil:
			errs = append(errs, fmt.Errorf("Handlers: nil handler for %s", p))
		default:
			out.handlers[p] = h
		}
	}
	if _, ok := out.handlers[sniff.HTTP2]; !ok {
		if h, ok := out.handlers[sniff.HTTP]; ok {
			out.handlers[sniff.HTTP2] = h
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("listen: invalid config: %w", errors.Join(errs...))
	}
	out.Handlers = nil // use out.handlers
	if out.MaxConns == 0 {
		out.MaxConns = DefaultMaxConns
	}
	if out.FirstBytesTimeout == 0 {
		out.FirstBytesTimeout = DefaultFirstBytesTimeout
	}
	if out.HandshakeTimeout == 0 {
		out.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if out.SniffBuffer == 0 {
		out.SniffBuffer = DefaultSniffBuffer
	}
	return out, nil
}

// handler returns the handler for p, nil if the listener refuses it.
func (c *config) handler(p sniff.Proto) Handler {
	if p == sniff.Unknown {
		return c.Fallback
	}
	return c.handlers[p]
}

// Options are the fixed parts of a Server.
type Options struct {
	// Name is the listener name carried by events.
	Name string
	// Events receives refusals. Nil discards them.
	Events event.Sink
	// Log receives debug lines (handler errors, dropped connections) and
	// accept errors. Nil discards. The caller adds component attributes.
	Log *slog.Logger
	// Now stamps events. Nil means time.Now. Socket deadlines always use
	// the real clock.
	Now func() time.Time
}

// Listen opens a TCP listening socket ("tcp", "tcp4" or "tcp6") with Go's
// defaults (SO_REUSEADDR on).
func Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}
