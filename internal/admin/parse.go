package admin

import (
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

// ParseAddress reads what an operator types for a list entry: an IP address
// ("203.0.113.7", "2001:db8::1") or a CIDR prefix ("198.51.100.0/24"). A
// single address becomes a /32 or /128. IPv4-mapped IPv6 forms are unmapped,
// as events carry them. A prefix with bits set beyond its length is refused
// (it is most often a typo) with the masked form suggested; zones are
// refused. Errors wrap ErrAddress.
func ParseAddress(s string) (netip.Prefix, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return netip.Prefix{}, fmt.Errorf("%w: empty; give an IP address or a CIDR prefix", ErrAddress)
	}
	if strings.Contains(in, "/") {
		p, err := netip.ParsePrefix(in)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w %q: not an IP address or CIDR prefix", ErrAddress, event.Clip(in, 64))
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%w %q: bits are set beyond /%d; did you mean %s?", ErrAddress, in, p.Bits(), m)
		}
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(in)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w %q: not an IP address or CIDR prefix", ErrAddress, event.Clip(in, 64))
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w %q: zones are not allowed", ErrAddress, event.Clip(in, 64))
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
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

// ParseDuration reads a positive duration written like Go's
// time.ParseDuration ("90s", "30m", "1h30m") or with a day unit, 24 hours
// ("7d", "1d12h", "1.5d"). Zero, negative, unit-less and overflowing values
// are refused; errors wrap ErrDuration.
func ParseDuration(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	fail := func(why string) (time.Duration, error) {
		return 0, fmt.Errorf("%w %q: %s; write it like 30m, 12h or 7d", ErrDuration, event.Clip(in, maxDurationText), why)
	}
	switch {
	case in == "":
		return fail("empty")
	case len(in) > maxDurationText:
		return fail("too long")
	}
	isNum := func(c byte) bool { return c == '.' || c >= '0' && c <= '9' }
	var total time.Duration
	for rest := in; rest != ""; {
		i := 0
		for i < len(rest) && isNum(rest[i]) {
			i++
		}
		j := i
		for j < len(rest) && !isNum(rest[j]) {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" {
			return fail("expected a number")
		}
		if unit == "" {
			return fail("missing unit")
		}
		var d time.Duration
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return fail("bad number")
			}
			h := f * float64(24*time.Hour)
			if h >= math.MaxInt64 {
				return fail("too large")
			}
			d = time.Duration(h)
		} else {
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				if strings.Contains(err.Error(), "unknown unit") {
					return fail("unknown unit " + strconv.Quote(unit))
				}
				return fail("bad number or unit")
			}
		}
		if total > math.MaxInt64-d {
			return fail("too large")
		}
		total += d
	}
	if total <= 0 {
		return fail("must be positive")
	}
	return total, nil
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
