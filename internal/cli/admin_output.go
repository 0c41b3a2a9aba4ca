package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pbxgate/pbxgate/internal/admin"
)

// timeLayout is how the operator commands print times (local time).
const timeLayout = "2006-01-02 15:04:05"

// safe makes text from the API fit for a terminal: control characters and
// invalid UTF-8 are escaped (user names and details come from attackers),
// and the result is cut to max runes.
func safe(s string, max int) string {
	var b strings.Builder
	for i, n := 0, 0; i < len(s); n++ {
		if n == max {
			b.WriteString("…")
			break
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// newTableWriter aligns columns two spaces apart.
func newTableWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// dash shows an empty field.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanDuration writes d coarsely, rounded down: 45s, 29m, 5h30m, 6d23h.
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return strconv.Itoa(days) + "d"
	}
	return fmt.Sprintf("%dd%dh", days, h)
}

// expiresText is the EXPIRES column: "never", "in 29m" or "expired".
func expiresText(exp, now time.Time) string {
	switch {
	case exp.IsZero():
		return "never"
	case !exp.After(now):
		return "expired"
	}
	return "in " + humanDuration(exp.Sub(now))
}

// untilText ends "banned X ..." lines.
func untilText(exp, now time.Time) string {
	if exp.IsZero() {
		return "permanently"
	}
	return fmt.Sprintf("until %s (%s)", exp.Local().Format(timeLayout), expiresText(exp, now))
}

// reasonText is the REASON/NOTE column.
func reasonText(e admin.EntryJSON) string {
	s := e.Reason
	if e.Note != "" {
		if s != "" {
			s += " — "
		}
		s += e.Note
	}
	return safe(dash(s), 120)
}

func level(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// printEntries prints a list as a table.
func printEntries(w io.Writer, list string, entries []admin.EntryJSON, now time.Time) error {
	if len(entries) == 0 {
		_, err := fmt.Fprintf(w, "the %s is empty\n", list)
		return err
	}
	tw := newTableWriter(w)
	fmt.Fprintln(tw, "ADDRESS\tORIGIN\tEXPIRES\tLEVEL\tREASON/NOTE")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Address, e.Origin, expiresText(e.Expires, now), level(e.Level), reasonText(e))
	}
	return tw.Flush()
}

// entryLine describes an entry in one line, for inspect.
func entryLine(e *admin.EntryJSON, now time.Time) string {
	if e == nil {
		return "no"
	}
	s := fmt.Sprintf("%s (%s, expires %s", e.Address, e.Origin, expiresText(e.Expires, now))
	if e.Level > 0 {
		s += ", level " + strconv.Itoa(e.Level)
	}
	return s + "): " + reasonText(*e)
}

// printSource prints an inspect answer.
func printSource(w io.Writer, si admin.SourceJSON, now time.Time) error {
	tw := newTableWriter(w)
	allowed := "yes"
	if !si.Allowed {
		allowed = "no, refused at connect"
	}
	fmt.Fprintf(tw, "address\t%s\n", si.Address)
	fmt.Fprintf(tw, "allowed\t%s\n", allowed)
	fmt.Fprintf(tw, "blacklisted\t%s\n", entryLine(si.Blacklisted, now))
	if si.Blacklisted != nil {
		for _, ev := range si.Blacklisted.Evidence {
			fmt.Fprintf(tw, "\t  %s\n", safe(ev, 160))
		}
	}
	fmt.Fprintf(tw, "whitelisted\t%s\n", entryLine(si.Whitelisted, now))
	fmt.Fprintf(tw, "score\t%d of %d in the last minute\n", si.Score, si.Threshold)
	fmt.Fprintf(tw, "known users\t%d\n", si.KnownUsers)
	seen := "never"
	if !si.LastSeen.IsZero() {
		seen = fmt.Sprintf("%s (%s ago)", si.LastSeen.Local().Format(timeLayout), humanDuration(max(now.Sub(si.LastSeen), 0)))
	}
	fmt.Fprintf(tw, "last seen\t%s\n", seen)
	return tw.Flush()
}

// The events listing has fixed columns so that followed events line up
// without buffering.
const eventFormat = "%-19s  %-19s  %-19s  %-15s  %-10s  %-10s  %-16s  %s\n"

func printEventHeader(w io.Writer) {
	fmt.Fprintf(w, eventFormat, "TIME", "KIND", "REASON", "SRC", "LISTENER", "SERVICE", "USER", "DETAIL")
}

func printEvent(w io.Writer, ev admin.EventJSON) {
	fmt.Fprintf(w, eventFormat, ev.Time.Local().Format(timeLayout), safe(ev.Kind, 19), dash(safe(ev.Reason, 19)),
		dash(ev.Source), dash(safe(ev.Listener, 32)), dash(safe(ev.Service, 32)), dash(safe(ev.User, 32)), safe(ev.Detail, 200))
}

// printStats prints the counters, one per line.
func printStats(w io.Writer, st admin.StatsJSON) error {
	tw := newTableWriter(w)
	for _, r := range []struct {
		name string
		v    any
	}{
		{"events seen", st.EventsSeen},
		{"events counted", st.EventsCounted},
		{"events ignored", st.EventsIgnored},
		{"sources counted now", st.Sources},
		{"sources evicted", st.SourcesEvicted},
		{"automatic bans", st.AutoBans},
		{"manual bans", st.ManualBans},
		{"bans lifted", st.Unbans},
		{"connections refused", st.Refused},
		{"blacklist entries", st.Blacklisted},
		{"whitelist entries", st.Whitelisted},
		{"store errors", st.StoreErrors},
		{"events lost by slow followers", st.EventsDroppedFollowers},
	} {
		fmt.Fprintf(tw, "%s\t%v\n", r.name, r.v)
	}
	return tw.Flush()
}
