// Package event defines the one typed stream of security-relevant happenings
// that every protocol handler emits: a source rejected by the gateway, a
// backend that could not be reached, a request rejected by the service behind
// the gateway, and successes. The fraud engine consumes it; until then a Sink
// that logs is used.
//
// The package holds only the value types and small sinks. It does not count,
// score or ban; that is the fraud engine's job.
package event

import (
	"context"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Kind says what an event means for fraud detection.
type Kind uint8

const (
	// RejectedByGateway: the gateway itself refused the source (unknown
	// protocol, unknown host or domain, denied path, TLS failure, ...).
	RejectedByGateway Kind = iota + 1
	// BackendUnreachable: the routed backend could not be reached.
	BackendUnreachable
	// RejectedByService: the service behind the gateway refused the request
	// (HTTP 401/403, LDAP invalidCredentials, ...).
	RejectedByService
	// Success: the service accepted the request (a 2xx/3xx answer, a
	// successful bind). Kept so NAT-aware scoring can tell offices from
	// scanners.
	Success
)

// String returns the stable, lower-case name used in logs and the API.
func (k Kind) String() string {
	switch k {
	case RejectedByGateway:
		return "rejected_by_gateway"
	case BackendUnreachable:
		return "backend_unreachable"
	case RejectedByService:
		return "rejected_by_service"
	case Success:
		return "success"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Suspicious reports whether the kind counts against the source.
func (k Kind) Suspicious() bool { return k != Success && k != 0 }

// Reasons. Short, stable, machine-readable strings; Detail carries the rest.
const (
	ReasonUnknownProtocol   = "unknown_protocol" // first bytes are no protocol we speak
	ReasonProtocolRefused   = "protocol_refused" // a protocol this listener does not accept
	ReasonFirstBytesTimeout = "first_bytes_timeout"
	ReasonTLSHandshake      = "tls_handshake" // handshake failed
	ReasonUnknownSNI        = "unknown_sni"   // no certificate for the name and strict SNI
	ReasonTLSRequired       = "tls_required"  // plaintext on a TLS-only listener
	ReasonConnLimit         = "connection_limit"
	ReasonUnknownHost       = "unknown_host"   // HTTP Host / SNI routes nowhere
	ReasonMissingHost       = "missing_host"   // HTTP request without Host
	ReasonBadRequest        = "bad_request"    // malformed or ambiguous request
	ReasonDeniedPath        = "denied_path"    // HTTP path rule said no
	ReasonUnknownDomain     = "unknown_domain" // LDAP bind domain routes nowhere
	ReasonBindRefused       = "bind_refused"   // anonymous/SASL/StartTLS refused by policy
	ReasonMalformedBind     = "malformed_bind" // first LDAP message is not a usable BindRequest
	ReasonDial              = "dial"           // backend connect failed
	ReasonStatus            = "status"         // HTTP status in the service's reject list; Detail has the code
	ReasonAuthChallenge     = "auth_challenge" // HTTP 401 to a request without credentials: a login prompt
	ReasonInvalidCreds      = "invalid_credentials"
	ReasonBindFailed        = "bind_failed" // other non-zero LDAP resultCode
	ReasonOK                = "ok"
	ReasonAdminAuth         = "admin_auth" // admin API request without a valid token

	// SIP edge.
	ReasonFlood       = "flood"               // initial requests over sip.flood.limit: source blocked
	ReasonScanner     = "scanner"             // User-Agent of a scanning tool
	ReasonNetwork     = "network_refused"     // REGISTER/INVITE from outside the company's allowed_networks
	ReasonCallLimit   = "call_limit"          // brand, company or roadwarrior call limit reached
	ReasonDestination = "blocked_destination" // INVITE to a blocked destination pattern
	ReasonChallenge   = "repeated_challenge"  // another 401/407 for a (source, user) with no success since the first

	// TURN.
	ReasonPeerDenied = "peer_denied" // relay to a special-purpose address not in allow_peers
)

// Event is one happening. Fields that do not apply are zero.
type Event struct {
	Time     time.Time
	Kind     Kind
	Source   netip.Addr // client address, unmapped
	Listener string     // listener name
	Service  string     // routed service name, "" if none
	Proto    string     // "http", "ldap", "sip", "tls", "unknown"
	Reason   string     // one of the Reason constants
	User     string     // user name where the protocol names one
	Detail   string     // short human text; never a whole packet
}

// Sink receives events. Emit must not block the caller for long and must be
// safe for concurrent use.
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Event)

// Emit calls f(e).
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard drops every event.
var Discard Sink = SinkFunc(func(Event) {})

// LogSink writes each event as one structured log line: suspicious events at
// warn level, successes at debug.
type LogSink struct{ Log *slog.Logger }

// Emit logs e.
func (s LogSink) Emit(e Event) {
	level := slog.LevelWarn
	if !e.Kind.Suspicious() {
		level = slog.LevelDebug
	}
	if !s.Log.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("kind", e.Kind.String()),
		slog.String("src", e.Source.String()),
		slog.String("listener", e.Listener),
		slog.String("proto", e.Proto),
		slog.String("reason", e.Reason),
	}
	if e.Service != "" {
		attrs = append(attrs, slog.String("service", e.Service))
	}
	if e.User != "" {
		attrs = append(attrs, slog.String("user", Clip(e.User, 128)))
	}
	if e.Detail != "" {
		attrs = append(attrs, slog.String("detail", Clip(e.Detail, 256)))
	}
	s.Log.LogAttrs(context.Background(), level, "event", attrs...)
}

// Fanout sends each event to every sink in order.
type Fanout []Sink

// Emit forwards e to every sink.
func (f Fanout) Emit(e Event) {
	for _, s := range f {
		s.Emit(e)
	}
}

// Recorder keeps every event in memory. Tests use it; it is not bounded.
type Recorder struct {
	mu     sync.Mutex // guards events
	events []Event
}

// Emit records e.
func (r *Recorder) Emit(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of what was recorded.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Clip shortens attacker-controlled text for logs: at most max bytes, with
// control and non-ASCII bytes escaped so a log line stays one line.
func Clip(s string, max int) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean && len(s) <= max {
		return s
	}
	q := strconv.QuoteToASCII(s)
	q = q[1 : len(q)-1]
	if len(q) > max {
		q = q[:max] + "…"
	}
	return q
}
