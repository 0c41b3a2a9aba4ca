package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

// results are the flat dotted key=value lines bench/sip.sh appends to its
// raw file, e.g. "call.pbxgate.rate=2500". A later line for the same key
// wins.
type results map[string]string

func readResults(path string) (results, error) {
	r, err := kv.Read(path)
	return results(r), err
}

// num returns the value of key as a number, and false when it is missing or
// not a number.
func (r results) num(key string) (float64, bool) { return kv.Results(r).Num(key) }

// ratio returns a/b when both are present and b is positive.
func (r results) ratio(a, b string) (float64, bool) { return kv.Results(r).Ratio(a, b) }

// int formats an integer-valued key with thousands separators.
func (r results) int(key string) string {
	v, ok := r.num(key)
	if !ok {
		return "n/a"
	}
	return kv.Group(int64(math.Round(v)))
}

// mib formats a kilobyte key as MiB.
func (r results) mib(key string) string {
	v, ok := r.num(key)
	return fmtNum(v/1024, ok, "%.1f MiB")
}

func fmtNum(v float64, ok bool, format string) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

var rateCases = []struct{ key, label string }{
	{"direct", "direct (sipp UAC -> UAS)"},
	{"kamailio", "Kamailio, stateless forward"},
	{"pbxgate", "pbxgate, all policy on"},
}

// memTargets are the memory targets: RSS with this many flows/connections.
var memTargets = []struct {
	kind, label string
	want        float64
	maxMB       float64
}{
	{"udp", "UDP flows", 100000, 200},
	{"tls", "TLS SIP connections", 10000, 400},
}

// rssAt extrapolates pbxgate's RSS (kB) to want flows linearly from the
// measurement with ok of them; exact when they were all opened.
func (r results) rssAt(kind string, want float64) (kb float64, extrapolated, ok bool) {
	p := "mem." + kind + "."
	before, ok1 := r.num(p + "rss_before_kb")
	after, ok2 := r.num(p + "rss_kb")
	n, ok3 := r.num(p + "ok")
	if !ok1 || !ok2 || !ok3 || n <= 0 {
		return 0, false, false
	}
	if n >= want {
		return after, false, true
	}
	return before + (after-before)/n*want, true, true
}

// report reads the raw results, writes the table to stdout and txtPath and
// the JSON summary to jsonPath, and tells whether every target was met.
func report(stdout io.Writer, rawPath, txtPath, jsonPath string) (bool, error) {
	r, err := readResults(rawPath)
	if err != nil {
		return false, err
	}
	txt, err := os.Create(txtPath)
	if err != nil {
		return false, err
	}
	defer txt.Close()
	verdicts := writeTable(io.MultiWriter(stdout, txt), r)
	if err := txt.Close(); err != nil {
		return false, err
	}

	derived := map[string]float64{}
	for _, s := range []string{"call", "register"} {
		for _, base := range []string{"kamailio", "direct"} {
			if v, ok := r.ratio(s+".pbxgate.rate", s+"."+base+".rate"); ok {
				derived[s+"_ratio_"+base] = math.Round(v*1000) / 1000
			}
		}
	}
	for _, s := range []string{"call", "register"} {
		if rate, kam, pbx, ok := r.cpuAt(s); ok {
			derived[s+"_cpu_rate"] = rate
			derived[s+"_cpu_us_kamailio"] = math.Round(kam*10) / 10
			derived[s+"_cpu_us_pbxgate"] = math.Round(pbx*10) / 10
			derived[s+"_cpu_ratio_kamailio_over_pbxgate"] = math.Round(kam/pbx*1000) / 1000
		}
	}
	for _, m := range memTargets {
		if kb, _, ok := r.rssAt(m.kind, m.want); ok {
			derived[m.kind+"_rss_mb_at_target"] = math.Round(kb*1024/1e6*10) / 10
		}
	}
	all := true
	names := make([]string, 0, len(verdicts))
	for k, v := range verdicts {
		names = append(names, k)
		if v.Pass == nil || !*v.Pass {
			all = false
		}
	}
	sort.Strings(names)
	ordered := make(map[string]kv.Verdict, len(verdicts))
	for _, k := range names {
		ordered[k] = verdicts[k]
	}
	out, err := json.MarshalIndent(map[string]any{
		"results":  kv.Results(r).Nested(),
		"derived":  derived,
		"verdicts": ordered,
		"pass":     all,
	}, "", "  ")
	if err != nil {
		return false, err
	}
	if err := os.WriteFile(jsonPath, append(out, '\n'), 0o644); err != nil {
		return false, err
	}
	return all, nil
}

func writeTable(w io.Writer, r results) map[string]kv.Verdict {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	flush := func() { tw.Flush() }

	fmt.Fprintf(w, "pbxgate SIP benchmarks, %s\n", r["meta.date"])
	fmt.Fprintf(w, "machine: %s, %s cores, %s; %s\n", r["meta.cpu"], r["meta.cores"], r["meta.kernel"], r["meta.os"])
	fmt.Fprintf(w, "pbxgate %s at %s (%s), %s (malloc %s), %s\n", r["meta.pbxgate_version"], r["meta.commit"], r["meta.go"],
		r["meta.kamailio"], r["meta.kamailio_malloc"], r["meta.sipp"])
	fmt.Fprintf(w, "pinning: %s\n", r["meta.pinning"])
	fmt.Fprintf(w, "CPU idle just before the run: %s%%; load average at start %s, at end %s\n", r["meta.idle_before_pct"], r["meta.loadavg"], r["meta.loadavg_end"])
	if idle, ok := r.num("meta.idle_before_pct"); ok && idle < 90 {
		fmt.Fprintf(w, "WARNING: the machine was busy before the run (%.0f%% idle): other processes compete for the CPUs and the numbers are unreliable\n", idle)
	}
	if note := r["meta.pbxgate_note"]; note != "" {
		fmt.Fprintf(w, "NOTE: %s\n", note)
	}
	fmt.Fprintln(w)

	v := map[string]kv.Verdict{}
	rateTable := func(n int, s, what string) {
		fmt.Fprintf(w, "%d. %s over UDP: sipp -r steps of %s s each (doubling from %s/s, then %s bisections, best of %s tries);\n",
			n, what, r["meta.step_secs"], r["meta.start_rate"], r["meta.bisect"], r["meta.tries"])
		fmt.Fprintf(w, "   sustainable = the highest rate where every call succeeded and the run took at most its schedule / 0.95 + 0.5 s\n")
		run := false
		for _, c := range rateCases {
			if _, ok := r[s+"."+c.key+".rate"]; ok {
				run = true
			}
		}
		if !run {
			fmt.Fprintln(w, "   not run")
			return
		}
		if idle, ok := r.num(s + ".idle_before_pct"); ok {
			fmt.Fprintf(w, "   the cases take turns at each round of the search; CPU idle just before: %.0f%%\n", idle)
			if idle < 90 {
				fmt.Fprintf(w, "WARNING: something else was using the CPUs: these numbers are unreliable\n")
			}
		}
		line("case", "sustainable/s", "first failing/s", "achieved/s", "retrans", "forwarder CPU", "CPU µs each")
		for _, c := range rateCases {
			p := s + "." + c.key + "."
			if _, ok := r[p+"rate"]; !ok {
				continue
			}
			fail := r.int(p + "fail_rate")
			if _, ok := r[p+"fail_rate"]; !ok {
				fail = "none <= " + r.int("meta.max_rate")
			}
			cpuPct, cpuEach := "", ""
			if cpu, ok := r.num(p + "cpu_secs"); ok {
				secs, _ := r.num(p + "secs")
				calls, _ := r.num(p + "calls")
				if secs > 0 && calls > 0 {
					cpuPct = fmt.Sprintf("%.0f%%", 100*cpu/secs)
					cpuEach = fmt.Sprintf("%.1f", cpu/calls*1e6)
				}
			}
			line(c.label, r.int(p+"rate"), fail, r.int(p+"achieved"), r.int(p+"retrans"), cpuPct, cpuEach)
		}
		flush()
		for _, c := range rateCases {
			if steps := r[s+"."+c.key+".steps"]; steps != "" {
				fmt.Fprintf(w, "   steps %s: %s\n", c.key, steps)
			}
		}
	}
	harness := func(s string) {
		d, ok := r.num(s + ".direct.rate")
		if !ok || d <= 0 {
			return
		}
		for _, c := range []string{"kamailio", "pbxgate"} {
			if x, ok := r.num(s + "." + c + ".rate"); ok && x >= 0.9*d {
				fmt.Fprintf(w, "NOTE: %s reached %.0f%% of the direct rate: the harness (sipp UAC + UAS on one core) is the limit, not the forwarder\n", c, 100*x/d)
			}
		}
	}

	rateTable(1, "call", "Calls (INVITE/180/200/ACK/BYE/200, hung up at once)")
	pk, okk := r.ratio("call.pbxgate.rate", "call.kamailio.rate")
	pd, okd := r.ratio("call.pbxgate.rate", "call.direct.rate")
	v["call_vs_kamailio"] = kv.Check("pbxgate sustainable call rate >= 0.80 x Kamailio's, 0 failed calls", pk, okk, pk >= 0.8)
	fmt.Fprintf(w, "call rate pbxgate/Kamailio %s [%s] (target >= 0.80), pbxgate/direct %s\n",
		fmtNum(pk, okk, "%.2f"), v["call_vs_kamailio"], fmtNum(pd, okd, "%.2f"))
	harness("call")
	cpuCompare(w, r, "call", "call")
	fmt.Fprintln(w)

	rateTable(2, "register", "REGISTER (one REGISTER, 200 OK; 1,000 users in turn)")
	rk, okrk := r.ratio("register.pbxgate.rate", "register.kamailio.rate")
	rd, okrd := r.ratio("register.pbxgate.rate", "register.direct.rate")
	fmt.Fprintf(w, "REGISTER rate pbxgate/Kamailio %s, pbxgate/direct %s (no target: reported)\n", fmtNum(rk, okrk, "%.2f"), fmtNum(rd, okrd, "%.2f"))
	harness("register")
	cpuCompare(w, r, "register", "REGISTER")
	fmt.Fprintln(w)

	fmt.Fprintln(w, "3. pbxgate memory: each flow/connection registers one user (200 OK from a stub PBX), then VmRSS")
	_, udpRun := r["mem.udp.rss_kb"]
	_, tlsRun := r["mem.tls.rss_kb"]
	if !udpRun && !tlsRun {
		fmt.Fprintln(w, "   not run (BENCH_SIP_STEPS without mem, PBXGATE_BIN=none, or pbxgate did not relay SIP)")
	} else {
		line("case", "wanted", "open", "failed", "RSS before", "RSS with them", "peak RSS", "KiB each", "fds", "setup s")
		for _, m := range memTargets {
			p := "mem." + m.kind + "."
			if _, ok := r[p+"rss_kb"]; !ok {
				continue
			}
			per := "n/a"
			if after, ok := r.num(p + "rss_kb"); ok {
				before, _ := r.num(p + "rss_before_kb")
				if n, ok := r.num(p + "ok"); ok && n > 0 {
					per = fmt.Sprintf("%.2f", (after-before)/n)
				}
			}
			line(m.label, r.int(p+"want"), r.int(p+"open"), r.int(p+"failed"), r.mib(p+"rss_before_kb"), r.mib(p+"rss_kb"),
				r.mib(p+"hwm_kb"), per, r.int(p+"fds"), r[p+"setup_secs"])
		}
		flush()
	}
	for _, m := range memTargets {
		p := "mem." + m.kind + "."
		kb, extra, ok := r.rssAt(m.kind, m.want)
		failed, _ := r.num(p + "failed")
		mb := kb * 1024 / 1e6
		key := m.kind + "_rss"
		v[key] = kv.Check(fmt.Sprintf("pbxgate VmRSS with %s %s <= %.0f MB", kv.Group(int64(m.want)), m.label, m.maxMB), mb, ok, mb <= m.maxMB && failed == 0)
		how := ""
		if extra {
			why := "BENCH_SIP_FLOWS / BENCH_SIP_TLS_CONNS"
			if c := r[p+"capped_by"]; c != "" {
				why = "open-file limit: " + c
			}
			how = fmt.Sprintf(", extrapolated linearly from %s (%s)", r.int(p+"ok"), why)
			vv := v[key]
			vv.Note = "extrapolated from " + r.int(p+"ok")
			v[key] = vv
		}
		if failed > 0 {
			how += fmt.Sprintf(", %s failed: %s", r.int(p+"failed"), failures(r, p))
		}
		fmt.Fprintf(w, "pbxgate RSS with %s %s: %s [%s] (target <= %.0f MB%s)\n", kv.Group(int64(m.want)), m.label, fmtNum(mb, ok, "%.0f MB"), v[key], m.maxMB, how)
	}
	pr, ok1 := r.num("mem.udp.port_range")
	addrs, ok2 := r.num("mem.udp.upstream_addresses")
	if !ok2 || addrs < 1 {
		addrs = 1
	}
	if ok1 && pr > 0 && pr*addrs < 100000 {
		fmt.Fprintf(w, "NOTE: the kernel's ephemeral port range has %s ports and pbxgate opened its flows from %.0f local address(es): at most %s flows to one PBX (sip.udp.upstream_addresses)\n",
			kv.Group(int64(pr)), addrs, kv.Group(int64(pr*addrs)))
	}
	return v
}

// cpuAt returns, for each rate at which both forwarders kept up, their CPU
// microseconds per call, and the highest such rate.
func (r results) cpuAt(s string) (rate, kam, pbx float64, ok bool) {
	for k, v := range r {
		rest, found := strings.CutPrefix(k, s+".kamailio.cpu.")
		if !found {
			continue
		}
		x, err := strconv.ParseFloat(rest, 64)
		if err != nil || x <= rate {
			continue
		}
		kc, err1 := strconv.ParseFloat(v, 64)
		pc, ok2 := r.num(s + ".pbxgate.cpu." + rest)
		secs, _ := r.num("meta.step_secs")
		if err1 != nil || !ok2 || secs <= 0 || kc <= 0 || pc <= 0 {
			continue
		}
		calls := x * secs
		rate, kam, pbx, ok = x, kc/calls*1e6, pc/calls*1e6, true
	}
	return rate, kam, pbx, ok
}

// cpuCompare prints the forwarders' CPU per call at the highest rate both
// kept up: when the harness is the limit, the measured rates cannot tell
// them apart, their CPU cost can.
func cpuCompare(w io.Writer, r results, s, what string) {
	rate, kam, pbx, ok := r.cpuAt(s)
	if !ok {
		return
	}
	fmt.Fprintf(w, "forwarder CPU per %s at %s/s (the highest rate both kept up): Kamailio %.1f µs, pbxgate %.1f µs; Kamailio/pbxgate %.2f (for information)\n",
		what, kv.Group(int64(rate)), kam, pbx, kam/pbx)
}

// failures lists the failed_* counters under prefix p.
func failures(r results, p string) string {
	var out []string
	for k, val := range r {
		if rest, ok := strings.CutPrefix(k, p+"failed_"); ok {
			out = append(out, rest+" "+val)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
