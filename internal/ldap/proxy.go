package ldap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// Defaults for Options.
const (
	DefaultIdle    = 5 * time.Minute
	DefaultTimeout = 10 * time.Second
	// maxPending bounds the binds awaiting their response per connection.
	maxPending = 64
	// minMaxMessage is the smallest accepted Options.MaxMessage: room for a
	// bind with a long DN.
	minMaxMessage = 512
)

// Target is a backend the proxy relays to.
type Target struct {
	Service string // service name, used in events and logs
	// Dial connects to the backend. It should honour ctx; ServeConn bounds
	// it by Options.Timeout.
	Dial func(ctx context.Context) (net.Conn, error)
}

// Options configure a Proxy.
type Options struct {
	// Listener names the listener in events.
	Listener string
	// Routes maps a bind domain to its backend. Keys are domains as Domain
	// returns them: ASCII lower case, no trailing dot ("example.com"); a key
	// in another form never matches. Nil or empty means no domain is known
	// (only Default is used). The proxy only reads the map: do not modify it
	// while the Proxy is in use.
	Routes map[string]Target
	// Anonymous receives anonymous simple binds and connections whose first
	// operation is not a bind (implicitly anonymous). SASL receives SASL
	// binds, whatever their name. StartTLS receives connections that begin
	// with StartTLS and allows StartTLS later on a connection. Nil refuses:
	// the client gets an LDAP error response (inappropriateAuthentication,
	// authMethodNotSupported, or protocolError for StartTLS), an event is
	// emitted and the connection is closed.
	Anonymous, SASL, StartTLS *Target
	// Default receives simple binds whose name has no domain or an unknown
	// one. Nil refuses them with invalidCredentials and an unknown_domain
	// event.
	Default *Target
	// MaxMessage caps the size of an LDAP message the proxy decodes: the
	// first message and every bind and extended operation. Larger binds are
	// refused; other large messages (search results, adds) are streamed
	// through without being buffered. Zero means DefaultMaxMessage (64 KiB);
	// at least 512.
	MaxMessage int
	// Idle closes a relayed connection when neither side sent anything for
	// this long. Zero means DefaultIdle (5 minutes).
	Idle time.Duration
	// Timeout bounds reading the first message and dialing the backend.
	// Zero means DefaultTimeout (10 seconds).
	Timeout time.Duration
	// Events receives the security events. Nil means event.Discard.
	Events event.Sink
	// Log receives debug lines about connections; the proxy logs nothing
	// above debug level. The caller adds the component attribute. Nil
	// discards.
	Log *slog.Logger
	// Now stamps events. Nil means time.Now.
	Now func() time.Time
}

// Proxy routes and relays LDAP connections. It is safe for concurrent use.
type Proxy struct {
	opts    Options
	max     int
	idle    time.Duration
	timeout time.Duration
	events  event.Sink
	log     *slog.Logger
	now     func() time.Time
}

// New checks opts and returns a Proxy. It has no side effects.
func New(opts Options) (*Proxy, error) {
	var errs []error
	for _, t := range []struct {
		name string
		t    *Target
	}{{"Anonymous", opts.Anonymous}, {"SASL", opts.SASL}, {"StartTLS", opts.StartTLS}, {"Default", opts.Default}} {
		if t.t != nil && t.t.Dial == nil {
			errs = append(errs, fmt.Errorf("ldap: Options.%s: Dial is nil", t.name))
		}
	}
	for d, t := range opts.Routes {
		switch {
		case t.Dial == nil:
			errs = append(errs, fmt.Errorf("ldap: Options.Routes[%q]: Dial is nil", d))
		case d == "" || lowerASCII(d) != d || d[len(d)-1] == '.':
			errs = append(errs, fmt.Errorf("ldap: Options.Routes[%q]: not a domain as Domain returns it (non-empty, ASCII lower case, no trailing dot)", d))
		}
	}
	if opts.MaxMessage != 0 && opts.MaxMessage < minMaxMessage {
		errs = append(errs, fmt.Errorf("ldap: Options.MaxMessage %d: must be 0 (default) or at least %d", opts.MaxMessage, minMaxMessage))
	}
	if opts.Idle < 0 {
		errs = append(errs, fmt.Errorf("ldap: Options.Idle %v: must not be negative", opts.Idle))
	}
	if opts.Timeout < 0 {
		errs = append(errs, fmt.Errorf("ldap: Options.Timeout %v: must not be negative", opts.Timeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p := &Proxy{
		opts:    opts,
		max:     cmpOr(opts.MaxMessage, DefaultMaxMessage),
		idle:    cmpOr(opts.Idle, DefaultIdle),
		timeout: cmpOr(opts.Timeout, DefaultTimeout),
		events:  opts.Events,
		log:     opts.Log,
		now:     opts.Now,
	}
	if p.events == nil {
		p.events = event.Discard
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	return p, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Serve accepts connections from ln and serves each with ServeConn until ctx
// is done or Accept fails. It closes ln and waits for the connections it
// started before returning; it returns nil when ctx ended it. Per-connection
// errors are logged at debug level (the events already say what happened).
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("ldap: accept: %w", err)
		}
		wg.Go(func() {
			if err := p.ServeConn(ctx, c, remoteAddr(c)); err != nil {
				p.log.Debug("connection ended", "src", c.RemoteAddr().String(), "err", err)
			}
		})
	}
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
