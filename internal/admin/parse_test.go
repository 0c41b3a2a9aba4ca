package admin

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{"203.0.113.7", "203.0.113.7/32", ""},
		{" 203.0.113.7 ", "203.0.113.7/32", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:192.0.2.1", "192.0.2.1/32", ""},
		{"198.51.100.0/24", "198.51.100.0/24", ""},
		{"2001:db8::/32", "2001:db8::/32", ""},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24", ""},
		{"0.0.0.0/0", "0.0.0.0/0", ""},
		{"198.51.100.7/24", "", "did you mean 198.51.100.0/24?"},
		{"203.0.113.300", "", `"203.0.113.300" is not a network`},
		{"203.0.113.0/33", "", "is not a network"},
		{"fe80::1%eth0", "", "zones are not allowed"},
		{"example.com", "", "is not a network"},
		{"", "", "empty"},
		{"1.2.3.4/", "", "is not a network"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseAddress(tt.in)
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrAddress) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseAddress(%q) = %v, %v; want error containing %q", tt.in, p, err, tt.err)
				}
				return
			}
			if err != nil || p.String() != tt.want {
				t.Fatalf("ParseAddress(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
			}
		})
	}
}

func TestFormatPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7/32": "203.0.113.7", "2001:db8::1/128": "2001:db8::1",
		"198.51.100.0/24": "198.51.100.0/24", "0.0.0.0/0": "0.0.0.0/0",
	} {
		if got := FormatPrefix(netip.MustParsePrefix(in)); got != want {
			t.Errorf("FormatPrefix(%s) = %s, want %s", in, got, want)
		}
	}
	if got := FormatPrefix(netip.Prefix{}); got != "invalid Prefix" {
		t.Errorf("FormatPrefix(zero) = %q", got)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"30m", 30 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"90s", 90 * time.Second, ""},
		{"7d", 7 * 24 * time.Hour, ""},
		{"1d12h", 36 * time.Hour, ""},
		{"1.5d", 36 * time.Hour, ""},
		{" 2h ", 2 * time.Hour, ""},
		{"500ms", 500 * time.Millisecond, ""},
		{"", 0, "empty"},
		{"30", 0, "has no unit"},
		{"d", 0, `invalid duration "d"`},
		{"-5m", 0, `invalid duration "-5m"`},
		{"0s", 0, "must be positive"},
		{"0d", 0, "must be positive"},
		{"5y", 0, `invalid duration "5y"`},
		{"1..5h", 0, `invalid duration "1..5h"`},
		{"1.2.3d", 0, `invalid duration "1.2.3d"`},
		{"200000d", 0, "too large"},
		{"106751d106751d", 0, "too large"},
		{"9999999999h", 0, "invalid duration"},
		{strings.Repeat("1", 65) + "s", 0, "too long"},
		{"soon", 0, `invalid duration "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDuration(tt.in)
			if tt.err != "" {
				if err == nil || !errors.Is(err, ErrDuration) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, d, err, tt.err)
				}
				return
			}
			if err != nil || d != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, d, err, tt.want)
			}
		})
	}
}

func TestParseEventQuery(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	q, err := parseEventQuery(url.Values{
		"kind": {"rejected_by_service"}, "source": {"198.51.100.0/24"}, "listener": {"web"},
		"service": {"portal"}, "proto": {"http"}, "reason": {"status"}, "user": {"bob"},
		"since": {"1d"}, "limit": {"7"}, "suspicious": {"true"}, "follow": {"1"},
	}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := eventQuery{
		filter: event.Filter{Kind: event.RejectedByService, Source: netip.MustParsePrefix("198.51.100.0/24"),
			Listener: "web", Service: "portal", Proto: "http", Reason: "status", User: "bob",
			Since: now.Add(-24 * time.Hour), Suspicious: true},
		limit: 7, follow: true,
	}
	if q != want {
		t.Fatalf("parseEventQuery = %+v\nwant %+v", q, want)
	}
	q, err = parseEventQuery(url.Values{}, now)
	if err != nil || q != (eventQuery{limit: DefaultEventLimit}) {
		t.Fatalf("empty query = %+v, %v", q, err)
	}
	q, err = parseEventQuery(url.Values{"since": {"2025-03-01T11:00:00+01:00"}}, now)
	if err != nil || !q.filter.Since.Equal(now.Add(-2*time.Hour)) {
		t.Fatalf("RFC 3339 since = %v, %v", q.filter.Since, err)
	}
	q, err = parseEventQuery(url.Values{"limit": {"10000"}}, now)
	if err != nil || q.limit != MaxEventLimit {
		t.Fatalf("limit 10000 = %v, %v", q.limit, err)
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"30m", "7d", "1d12h", "1.5d", "0s", "-1h", "5y", "1e3h", "µs", "1..2d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !errors.Is(err, ErrDuration) {
				t.Fatalf("error %v does not wrap ErrDuration", err)
			}
			return
		}
		if d <= 0 {
			t.Fatalf("ParseDuration(%q) = %v, not positive", s, d)
		}
		// Round trip through Go's own form.
		if d2, err := ParseDuration(d.String()); err != nil || d2 != d {
			t.Fatalf("round trip %q -> %v -> %v, %v", s, d, d2, err)
		}
	})
}

func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "198.51.100.0/24", "2001:db8::/32", "::ffff:192.0.2.1", "fe80::1%eth0", "1.2.3.4/33", "::ffff:0:0/96"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseAddress(s)
		if err != nil {
			if !errors.Is(err, ErrAddress) {
				t.Fatalf("error %v does not wrap ErrAddress", err)
			}
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("ParseAddress(%q) = %v: not a clean masked prefix", s, p)
		}
		if p2, err := ParseAddress(FormatPrefix(p)); err != nil || p2 != p {
			t.Fatalf("round trip %q -> %v -> %v, %v", s, p, p2, err)
		}
	})
}
