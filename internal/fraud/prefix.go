package fraud

import (
	"fmt"
	"net/netip"
	"time"
)

// normPrefix returns p in the form the engine keys entries by: an IPv4
// prefix for IPv4-mapped IPv6 prefixes of /96 or longer, no zone, masked.
func normPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%w: prefix %q is not a valid address or network", ErrInvalid, p.String())
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// hostPrefix returns the /32 or /128 of a (already unmapped).
func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}

// isHost reports whether p names a single address.
func isHost(p netip.Prefix) bool { return p.Bits() == p.Addr().BitLen() }

// inside reports whether q lies entirely within p.
func inside(q, p netip.Prefix) bool {
	return q.Addr().Is4() == p.Addr().Is4() && q.Bits() >= p.Bits() && p.Contains(q.Addr())
}

// nanos converts an expiry to the compact form kept in memory: 0 for never.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	n := t.UnixNano()
	if n == 0 { // the Unix epoch itself; keep "0 means never" unambiguous
		n = 1
	}
	return n
}

// fromNanos is the inverse of nanos.
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// expiredAt reports whether a compact expiry is at or before now.
func expiredAt(exp, now int64) bool { return exp != 0 && exp <= now }
