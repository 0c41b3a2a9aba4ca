package admin

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/event"
)

// ParseAddress reads what an operator types for a list entry: an IP address
// ("203.0.113.7", "2001:db8::1") or a CIDR prefix ("198.51.100.0/24"), in
// the syntax of config.ParseNetwork (a single address becomes a /32 or
// /128, IPv4-mapped forms are unmapped, host bits and zones are refused).
// Errors wrap ErrAddress.
func ParseAddress(s string) (netip.Prefix, error) {
	p, err := config.ParseNetwork(s)
	if err != nil {
		return netip.Prefix{}, &kindError{ErrAddress, err}
	}
	return p, nil
}

// FormatPrefix writes p the way the API and CLI show it: a single address
// (/32, /128) bare, anything wider in CIDR notation.
func FormatPrefix(p netip.Prefix) string {
	if p.IsValid() && p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

const maxDurationText = 64

// ParseDuration reads a positive duration in the syntax of
// config.ParseDuration ("90s", "30m", "1h30m", "7d", "1.5d"). Zero is
// refused; errors wrap ErrDuration.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	if len(in) > maxDurationText {
		return 0, fmt.Errorf("%w %q: too long", ErrDuration, event.Clip(in, maxDurationText))
	}
	d, err := config.ParseDuration(in)
	if err != nil {
		return 0, &kindError{ErrDuration, err}
	}
	if d <= 0 {
		return 0, fmt.Errorf("%w %q: must be positive", ErrDuration, in)
	}
	return d.D(), nil
}

// Limits of the events listing.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 10000
)

// eventQuery is a parsed GET /api/v1/events query.
type eventQuery struct {
	filter event.Filter
	limit  int
	follow bool
}

var eventParams = []string{"kind", "source", "listener", "service", "proto", "reason", "user", "since", "limit", "suspicious", "follow"}

// parseEventQuery reads the events endpoint's query parameters. since is
// either an RFC 3339 time or a duration back from now.
func parseEventQuery(q url.Values, now time.Time) (eventQuery, error) {
	out := eventQuery{limit: DefaultEventLimit}
	for k, vs := range q {
		if !slices.Contains(eventParams, k) {
			return out, fmt.Errorf("unknown parameter %q; known: %s", event.Clip(k, 32), strings.Join(eventParams, ", "))
		}
		if len(vs) > 1 {
			return out, fmt.Errorf("parameter %q given %d times", k, len(vs))
		}
	}
	f := &out.filter
	if s := q.Get("kind"); s != "" {
		k, ok := parseKind(s)
		if !ok {
			return out, fmt.Errorf("kind %q: want one of %s", event.Clip(s, 32), strings.Join(kindNames(), ", "))
		}
		f.Kind = k
	}
	if s := q.Get("source"); s != "" {
		p, err := ParseAddress(s)
		if err != nil {
			return out, fmt.Errorf("source: %w", err)
		}
		f.Source = p
	}
	f.Listener, f.Service, f.Proto = q.Get("listener"), q.Get("service"), q.Get("proto")
	f.Reason, f.User = q.Get("reason"), q.Get("user")
	if s := q.Get("since"); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			f.Since = t
		} else if d, err := ParseDuration(s); err == nil {
			f.Since = now.Add(-d)
		} else {
			return out, fmt.Errorf("since %q: want an RFC 3339 time (2006-01-02T15:04:05Z) or a duration back from now (10m, 2h, 1d)", event.Clip(s, 64))
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxEventLimit {
			return out, fmt.Errorf("limit %q: want a number from 1 to %d", event.Clip(s, 32), MaxEventLimit)
		}
		out.limit = n
	}
	var err error
	if f.Suspicious, err = parseFlag(q, "suspicious"); err != nil {
		return out, err
	}
	if out.follow, err = parseFlag(q, "follow"); err != nil {
		return out, err
	}
	return out, nil
}

func parseFlag(q url.Values, name string) (bool, error) {
	switch s := q.Get(name); s {
	case "", "0", "false", "no":
		return false, nil
	case "1", "true", "yes":
		return true, nil
	default:
		return false, fmt.Errorf("%s %q: want 1 or 0", name, event.Clip(s, 32))
	}
}

// maxKind bounds the search for kind names; event kinds are few.
const maxKind = 32

func parseKind(s string) (event.Kind, bool) {
	for k := event.Kind(1); k < maxKind; k++ {
		if n := k.String(); n == s && !strings.HasPrefix(n, "kind(") {
			return k, true
		}
	}
	return 0, false
}

func kindNames() []string {
	var out []string
	for k := event.Kind(1); k < maxKind; k++ {
		if n := k.String(); !strings.HasPrefix(n, "kind(") {
			out = append(out, n)
		}
	}
	return out
}
