package main

import (
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

func parseAddr(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil { // a ban may name a network
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// isAttacker reports whether a is one of the first n attacker sources.
func isAttacker(a netip.Addr, n int) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	k := int(b[2])<<8 | int(b[3])
	return b[0] == 127 && b[1] == 2 && k >= 1 && k <= n
}

// isLegit reports whether a is in the legitimate users' 127.0.1.0/24.
func isLegit(a netip.Addr) bool {
	b := a.As4()
	return a.Is4() && b[0] == 127 && b[1] == 0 && b[2] == 1
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func roundTo(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// printReport writes the human summary.
func printReport(w io.Writer, r *report) {
	fmt.Fprintf(w, "pbxgate fraud flood benchmark  %s  %s\n", r.Meta["date"], r.Meta["pbxgate_version"])
	fmt.Fprintf(w, "%s, %s cores, %s; pinning: %s\n", r.Meta["kernel"], r.Meta["cores"], r.Meta["go"], orNone(r.Meta["pinning"]))
	fmt.Fprintf(w, "%v legitimate users at %v req/s total; %v attackers, at most %v attempts each; threshold %v/min, ban %v; suspect rate %v/s, unproven concurrency %v\n",
		r.Setup["users"], r.Setup["rate_rps"], r.Setup["attackers"], r.Setup["attempts_per_attacker"],
		r.Setup["suspicious_per_minute"], r.Setup["blacklist_for"], r.Setup["suspect_rate"], orDash(r.Setup["unproven_concurrency"]))
	fmt.Fprintf(w, "bans enforced %s; attackers give up a connection attempt after %v s\n\n", r.enforcement(), r.Setup["attacker_connect_timeout_s"])

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "legitimate users\tseconds\tscheduled\tok\tfailed\tunsent\tlate\tsuccess %\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tpbxgate CPU s\t")
	for i, p := range r.phases() {
		s := p.s
		cpu := "-" // measured for whole phases through pbxgate only
		if i < 2 {
			cpu = fmt.Sprintf("%.2f", s.GatewayCPU)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%d\t%d\t%d\t%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t\n",
			p.name, s.Duration, s.Scheduled, s.OK, s.Failed, s.Unsent, s.Late, s.SuccessPct, s.P50, s.P90, s.P99, s.P999, s.Max, cpu)
	}
	tw.Flush()
	for _, p := range r.phases() {
		if p.s.FirstError != "" {
			fmt.Fprintf(w, "  %s: first failure: %s\n", p.name, p.s.FirstError)
		}
	}
	fmt.Fprintf(w, "\np99 flood / quiet: %.3f\n", r.Ratio)
	fmt.Fprintf(w, "flood, second by second:\n  p99 ms:        %s\n", secondsLine(r.Flood.Seconds, func(s second) float64 { return s.P99 }))
	if r.FloodDirect != nil {
		fmt.Fprintf(w, "  direct p99 ms: %s\n", secondsLine(r.FloodDirect.Seconds, func(s second) float64 { return s.P99 }))
	}
	fmt.Fprintf(w, "  pbxgate CPU s: %s\n", secondsLine(r.Flood.Seconds, func(s second) float64 { return s.GatewayCPU }))
	if r.Kernel != nil {
		fmt.Fprintf(w, "  kernel drops:  %s\n", secondsLine(r.Flood.Seconds, func(s second) float64 { return float64(s.KernelDrops) }))
	}
	for c := range cpuCount(r.Flood.Seconds) {
		fmt.Fprintf(w, "  CPU %d busy %%:  %s\n", c, secondsLine(r.Flood.Seconds, func(s second) float64 {
			if c < len(s.CPUs) {
				return s.CPUs[c].Busy
			}
			return 0
		}))
	}
	for _, p := range r.phases()[:2] {
		fmt.Fprintf(w, "TCP counters during %s: %s\n", p.name, countersLine(p.s.TCP))
	}
	fmt.Fprintln(w)

	a := r.Attack
	fmt.Fprintf(w, "attackers: %d attempts in %.1f s (%.0f/s); last answer before a ban at %.0f ms; first refusal: half of them by %.0f ms, all by %.0f ms\n",
		a.Attempts, a.Duration, a.AttemptsPerSec, a.LastAnswerMs, a.RefusedMedianMs, a.AllRefusedMs)
	fmt.Fprintf(w, "  answered 401 %d (before the ban %d, %.2f per attacker), other answers %d\n",
		a.Answered401, a.AnsweredBeforeBan, float64(a.AnsweredBeforeBan)/float64(max(1, a.Attackers-a.NeverRefused)), a.AnsweredOther)
	fmt.Fprintf(w, "  refused %d, held unanswered after the ban %d, connection attempts timed out %d (no handshake within %v s), no answer in time %d, errors %d, cut by the phase end %d\n",
		a.Refused, a.Held, a.ConnectTimeouts, a.ConnectTimeout, a.Timeouts, a.Errors, a.Unfinished)
	fmt.Fprintf(w, "  after an attacker's first refusal: %d attempts, %d still answered; never refused: %d attackers\n",
		a.AttemptsAfterBan, a.AnsweredAfterBan, a.NeverRefused)
	fmt.Fprintf(w, "  answers before the ban: %s\n", histogram(a.BeforeBanHistogram))
	if a.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", a.FirstError)
	}
	if k := r.Kernel; k != nil {
		fmt.Fprintf(w, "kernel blacklist: dropped %d packets during the flood (%d in the quiet phase, %d after the flood); set bl4 holds %d attackers (%d banned)\n",
			k.DropsFlood, k.DropsQuiet, k.DropsAfter, k.Covered, k.Banned)
		if k.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", k.Error)
		}
	}
	b := r.Bans
	fmt.Fprintf(w, "bans logged: %d (attackers %d, legitimate users %d, other %d); median %.0f ms, last %.0f ms after the flood began\n",
		b.Logged, b.Attackers, b.Legit, b.Other, b.MedianAfterMs, b.LastAfterMs)
	fmt.Fprintf(w, "pbxgate: peak RSS %d KiB; error log lines: %s\n\n", r.Gateway.PeakRSSKiB, errorsLine(r.Gateway.ErrorLines))

	v := r.Verdict
	fmt.Fprintf(w, "target success >= %g %%: %s (%.3f %%)\n", v.MinSuccessPct, passFail(v.SuccessOK), r.Flood.SuccessPct)
	fmt.Fprintf(w, "target p99 ratio <= %g: %s (%.3f)\n", v.MaxRatio, passFail(v.RatioOK), r.Ratio)
	for _, p := range v.Problems {
		fmt.Fprintf(w, "check failed: %s\n", p)
	}
	fmt.Fprintf(w, "RESULT: %s\n", passFail(v.Pass))
}

// enforcement says where bans were enforced.
func (r *report) enforcement() string {
	if r.Kernel != nil {
		return "in the kernel (firewall.kernel_blacklist: nftables table inet pbxgate_bl, prerouting, priority raw) and by pbxgate"
	}
	return "by pbxgate in user space only (a banned source's connections are accepted and closed)"
}

type namedPhase struct {
	name string
	s    *phaseStats
}

// phases lists the measured phases: users through pbxgate, then the
// control straight to the backend when there is one.
func (r *report) phases() []namedPhase {
	ps := []namedPhase{{"quiet", r.Quiet}, {"flood", r.Flood}}
	if r.FloodBurst != nil && r.FloodBanned != nil {
		ps = append(ps, namedPhase{"flood, answered burst", r.FloodBurst}, namedPhase{"flood, after it", r.FloodBanned})
	}
	if r.FloodFirst != nil && r.FloodRest != nil {
		ps = append(ps, namedPhase{"flood, 1st second", r.FloodFirst}, namedPhase{"flood, from the 2nd second", r.FloodRest})
	}
	if r.QuietDirect != nil && r.FloodDirect != nil {
		ps = append(ps, namedPhase{"quiet, direct", r.QuietDirect}, namedPhase{"flood, direct", r.FloodDirect})
	}
	return ps
}

func secondsLine(s []second, f func(second) float64) string {
	parts := make([]string, len(s))
	for i, x := range s {
		parts[i] = strconv.FormatFloat(f(x), 'f', -1, 64)
	}
	return strings.Join(parts, " ")
}

func countersLine(m map[string]int64) string {
	parts := make([]string, 0, len(m))
	for _, k := range tcpCounters {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %d", k[strings.IndexByte(k, '.')+1:], v))
		}
	}
	return strings.Join(parts, ", ")
}

func cpuCount(s []second) int {
	n := 0
	for _, x := range s {
		n = max(n, len(x.CPUs))
	}
	return n
}

func errorsLine(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %q", m[k], k)
	}
	return strings.Join(parts, ", ")
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// histogram prints "11: 990, 12: 10, never: 0" in numeric order.
func histogram(h map[string]int) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		x, errA := strconv.Atoi(a)
		y, errB := strconv.Atoi(b)
		switch {
		case errA != nil && errB != nil:
			return strings.Compare(a, b)
		case errA != nil: // "never" last
			return 1
		case errB != nil:
			return -1
		}
		return x - y
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, h[k]))
	}
	return strings.Join(parts, ", ")
}

// orDash is v, or "-" for a setting an older report does not have.
func orDash(v any) any {
	if v == nil {
		return "-"
	}
	return v
}
