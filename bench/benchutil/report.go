package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

// results are the flat dotted key=value lines bench/run.sh appends to its
// raw file, e.g. "http.pbxgate.rps=51234.5". A later line for the same key
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

// diff returns a-b when both are present.
func (r results) diff(a, b string) (float64, bool) { return kv.Results(r).Diff(a, b) }

// harnessWarning says when, with the pinning of bench/run.sh, the core of
// the load generator and the origin (CPU 0) was nearly saturated during a
// proxied constant-rate case: its own scheduling delays (the generator's
// lag from a request's slot to its write is one part) are then in the p99.
// Through a proxy on the other core that core does more per request than
// direct (cross-core wake-ups, less batching), so it can saturate where the
// direct case did not.
func harnessWarning(w io.Writer, r results, prefix string) {
	if !r.pinned() {
		return
	}
	direct, okd := r.num(prefix + ".direct.cpu0_busy_pct")
	for _, c := range []string{"pbxgate", "haproxy"} {
		busy, ok := r.num(prefix + "." + c + ".cpu0_busy_pct")
		if !ok || busy < 90 {
			continue
		}
		lag, _ := r.num(prefix + "." + c + ".lag_p99_us")
		fmt.Fprintf(w, "WARNING: through %s the generator/origin core (CPU 0) was %.0f %% busy (direct: %s); the generator's own lag p99 was %.3f ms: this p99 measures the harness as much as the proxy\n",
			c, busy, fmtNum(direct, okd, "%.0f %%"), lag/1000)
	}
}

// pinned reports whether the run used bench/run.sh's pinning (load tools
// and origins on CPU 0, the proxy alone on CPU 1), which the per-core
// warnings rely on.
func (r results) pinned() bool { return strings.HasPrefix(r["meta.pinning"], "wrk/loadgen") }

// relayWarning says when, with the pinning of bench/run.sh, a proxied
// relay transfer kept the ends' core (CPU 0: client and origin) 90 % busy
// or more while the proxy's core had time to spare: the rate is then the
// ends' limit, not the proxy's. A direct transfer on one core is two
// copies back to back with the data still in that core's cache; through a
// proxy the data waits in two more socket queues, and the same copies on
// CPU 0 cost more per byte.
func relayWarning(w io.Writer, r results) {
	if !r.pinned() {
		return
	}
	for _, c := range []string{"haproxy", "pbxgate"} {
		for _, dir := range []string{"down", "up"} {
			p := "tcp." + c + "." + dir + "_"
			ends, ok0 := r.num(p + "cpu0_busy_pct")
			proxy, ok1 := r.num(p + "cpu1_busy_pct")
			if !ok0 || !ok1 || ends < 90 || proxy >= 90 {
				continue
			}
			fmt.Fprintf(w, "WARNING: relaying %s through %s the ends' core (CPU 0) was %.0f %% busy and the proxy's core %.0f %%: this rate is the ends' limit, not the proxy's\n",
				dir, c, ends, proxy)
		}
	}
}

// coreSecsPerGB is the proxy core's (CPU 1's) busy time in seconds per 10^9
// bytes relayed, in the best transfer of case key in direction dir: its
// busy share times the time one GB takes at that rate (1000 / MB/s).
func (r results) coreSecsPerGB(key, dir string) (float64, bool) {
	p := "tcp." + key + "." + dir + "_"
	busy, ok1 := r.num(p + "cpu1_busy_pct")
	mbps, ok2 := r.num(p + "mbps")
	if !ok1 || !ok2 || mbps <= 0 {
		return 0, false
	}
	return busy / 100 * 1000 / mbps, true
}

func fmtNum(v float64, ok bool, format string) string {
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

// int formats an integer-valued key with thousands separators.
func (r results) int(key string) string {
	v, ok := r.num(key)
	if !ok {
		return "n/a"
	}
	return kv.Group(int64(math.Round(v)))
}

// ms formats a microsecond key as milliseconds.
func (r results) ms(key string) string {
	v, ok := r.num(key)
	return fmtNum(v/1000, ok, "%.3f ms")
}

// pct formats a percentage key.
func (r results) pct(key string) string {
	v, ok := r.num(key)
	return fmtNum(v, ok, "%.0f %%")
}

// mb formats a kilobyte key as megabytes (MiB).
func (r results) mb(key string) string {
	v, ok := r.num(key)
	return fmtNum(v/1024, ok, "%.1f MiB")
}

func check(target string, v float64, ok bool, pass func(float64) bool) kv.Verdict {
	return kv.Check(target, v, ok, ok && pass(v))
}

var httpCases = []struct{ key, label string }{
	{"direct", "direct to origin (no proxy)"},
	{"haproxy", "HAProxy, plain"},
	{"pbxgate", "pbxgate, plain"},
	{"pbxgate_access", "pbxgate, plain, access log on"},
	{"haproxy_tls", "HAProxy, TLS"},
	{"pbxgate_tls", "pbxgate, TLS"},
}

// report reads the raw results, writes the table to stdout and txtPath and
// the JSON summary to jsonPath.
func report(stdout io.Writer, rawPath, txtPath, jsonPath string) error {
	r, err := readResults(rawPath)
	if err != nil {
		return err
	}
	txt, err := os.Create(txtPath)
	if err != nil {
		return err
	}
	defer txt.Close()
	verdicts := writeTable(io.MultiWriter(stdout, txt), r)

	derived := map[string]any{}
	put := func(name string) func(float64, bool) {
		return func(v float64, ok bool) {
			if ok {
				derived[name] = math.Round(v*1000) / 1000
			}
		}
	}
	put("http_ratio_plain")(ratioOf(r, "pbxgate", "haproxy"))
	put("http_ratio_tls")(ratioOf(r, "pbxgate_tls", "haproxy_tls"))
	put("access_log_cost")(r.ratio("http.pbxgate_access.rps", "http.pbxgate.rps"))
	put("added_p99_us_pbxgate")(r.diff("rate.pbxgate.p99_us", "rate.direct.p99_us"))
	put("added_p99_us_haproxy")(r.diff("rate.haproxy.p99_us", "rate.direct.p99_us"))
	put("added_p99_us_pbxgate_lower_rate")(r.diff("rate2.pbxgate.p99_us", "rate2.direct.p99_us"))
	put("added_p99_us_haproxy_lower_rate")(r.diff("rate2.haproxy.p99_us", "rate2.direct.p99_us"))
	put("tcp_ratio_down")(r.ratio("tcp.pbxgate.down_mbps", "tcp.direct.down_mbps"))
	put("tcp_ratio_up")(r.ratio("tcp.pbxgate.up_mbps", "tcp.direct.up_mbps"))
	for _, c := range []string{"pbxgate", "haproxy"} {
		put("tcp_core_s_per_gb_down_" + c)(r.coreSecsPerGB(c, "down"))
		put("tcp_core_s_per_gb_up_" + c)(r.coreSecsPerGB(c, "up"))
	}

	out := map[string]any{"results": kv.Results(r).Nested(), "derived": derived, "targets": verdicts}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonPath, append(b, '\n'), 0o644)
}

func ratioOf(r results, a, b string) (float64, bool) {
	return r.ratio("http."+a+".rps", "http."+b+".rps")
}

// writeTable prints the human summary and returns the target verdicts.
func writeTable(w io.Writer, r results) map[string]kv.Verdict {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cells ...string) { fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t") }
	flush := func() { tw.Flush(); fmt.Fprintln(w) }

	fmt.Fprintf(w, "pbxgate benchmarks, %s\n", r["meta.date"])
	fmt.Fprintf(w, "machine: %s, %s cores, %s; %s\n", r["meta.cpu"], r["meta.cores"], r["meta.kernel"], r["meta.os"])
	fmt.Fprintf(w, "pbxgate %s at %s (%s), %s, %s, %s\n", r["meta.pbxgate_version"], r["meta.commit"], r["meta.go"], r["meta.haproxy"], r["meta.wrk"], r["meta.origin"])
	fmt.Fprintf(w, "pinning: %s\n", r["meta.pinning"])
	fmt.Fprintf(w, "CPU idle just before the run: %s%%; load average at start %s, at end %s\n", r["meta.idle_before_pct"], r["meta.loadavg"], r["meta.loadavg_end"])
	if idle, ok := r.num("meta.idle_before_pct"); ok && idle < 90 {
		fmt.Fprintf(w, "WARNING: the machine was busy before the run (%.0f%% idle): other processes compete for the CPUs and the numbers are unreliable\n", idle)
	}
	var busy []string
	for _, step := range []string{"http", "rate", "tcp", "idle"} {
		if idle, ok := r.num("meta.idle_before_" + step + "_pct"); ok && idle < 90 {
			busy = append(busy, fmt.Sprintf("%s (%.0f%% idle)", step, idle))
		}
	}
	if len(busy) > 0 {
		fmt.Fprintf(w, "WARNING: something else was using the CPUs before step(s) %s: those numbers are unreliable\n", strings.Join(busy, ", "))
	}
	fmt.Fprintln(w)

	v := map[string]kv.Verdict{}

	fmt.Fprintf(w, "1. HTTP small response, keep-alive: wrk -t1 -c%s -d%s --latency (throughput), and wrk -t1 -c1 -d%s (latency)\n",
		r["meta.wrk_conns"], r["meta.duration"], r["meta.lat_duration"])
	line("case", "req/s", "p50", "p99", "errors", "c1 req/s", "c1 p50", "c1 p99")
	for _, c := range httpCases {
		p := "http." + c.key + "."
		q := "http_c1." + c.key + "."
		if _, ok := r[p+"rps"]; !ok {
			if _, ok := r[q+"rps"]; !ok {
				continue
			}
		}
		errs, _ := r.num(p + "errors")
		non2xx, _ := r.num(p + "non2xx")
		line(c.label, r.int(p+"rps"), r.ms(p+"p50_us"), r.ms(p+"p99_us"), kv.Group(int64(errs+non2xx)),
			r.int(q+"rps"), r.ms(q+"p50_us"), r.ms(q+"p99_us"))
	}
	flush()
	rp, okp := ratioOf(r, "pbxgate", "haproxy")
	rt, okt := ratioOf(r, "pbxgate_tls", "haproxy_tls")
	v["http_plain_vs_haproxy"] = check("pbxgate/HAProxy req/s >= 0.80 (plain)", rp, okp, func(x float64) bool { return x >= 0.8 })
	v["http_tls_vs_haproxy"] = check("pbxgate/HAProxy req/s >= 0.80 (TLS)", rt, okt, func(x float64) bool { return x >= 0.8 })
	fmt.Fprintf(w, "req/s ratio pbxgate/HAProxy: plain %s [%s], TLS %s [%s] (target >= 0.80)\n",
		fmtNum(rp, okp, "%.2f"), v["http_plain_vs_haproxy"], fmtNum(rt, okt, "%.2f"), v["http_tls_vs_haproxy"])
	if a, ok := r.ratio("http.pbxgate_access.rps", "http.pbxgate.rps"); ok {
		fmt.Fprintf(w, "access log on (level info, %s lines written to a file) keeps %.0f%% of pbxgate's plain req/s\n", r.int("meta.access_log_lines"), a*100)
	}
	if d, ok := r.num("http.direct.rps"); ok {
		for _, c := range []string{"haproxy", "pbxgate"} {
			if x, ok := r.num("http." + c + ".rps"); ok && x > 0.9*d {
				fmt.Fprintf(w, "WARNING: %s reached %.0f%% of the direct rate: the load generator/origin core may be the limit\n", c, 100*x/d)
			}
		}
	}
	fmt.Fprintln(w)

	// rateTable prints one constant-rate round (keys under prefix).
	rateTable := func(prefix string) {
		line("case", "achieved req/s", "p50", "p90", "p99", "p99.9", "max", "errors", "dropped", "gen lag p99", "CPU 0 busy", "CPU 1 busy")
		for _, c := range []struct{ key, label string }{{"direct", "direct to origin"}, {"haproxy", "HAProxy, plain"}, {"pbxgate", "pbxgate, plain"}} {
			p := prefix + "." + c.key + "."
			if _, ok := r[p+"rps"]; !ok {
				continue
			}
			errs, _ := r.num(p + "errors")
			non2xx, _ := r.num(p + "non2xx")
			line(c.label, r.int(p+"rps"), r.ms(p+"p50_us"), r.ms(p+"p90_us"), r.ms(p+"p99_us"), r.ms(p+"p999_us"), r.ms(p+"max_us"),
				kv.Group(int64(errs+non2xx)), r.int(p+"dropped"), r.ms(p+"lag_p99_us"), r.pct(p+"cpu0_busy_pct"), r.pct(p+"cpu1_busy_pct"))
		}
		flush()
	}
	fmt.Fprintf(w, "2. Open-loop constant rate %s req/s (%s), %s conns, %s measured after %s warm-up\n",
		r.int("rate.target_rps"), r["rate.basis"], r["rate.conns"], r["rate.duration"], r["rate.warmup"])
	rateTable("rate")
	ap, okap := r.diff("rate.pbxgate.p99_us", "rate.direct.p99_us")
	ah, okah := r.diff("rate.haproxy.p99_us", "rate.direct.p99_us")
	v["added_p99"] = check("added p99 through pbxgate < 1 ms at half peak", ap, okap, func(x float64) bool { return x < 1000 })
	fmt.Fprintf(w, "added p99: pbxgate %s [%s] (target < 1 ms), HAProxy %s\n",
		fmtNum(ap/1000, okap, "%.3f ms"), v["added_p99"], fmtNum(ah/1000, okah, "%.3f ms"))
	if d, ok := r.num("rate.direct.p99_us"); ok && d > 1000 {
		fmt.Fprintf(w, "WARNING: direct to origin alone has p99 %.3f ms at this rate: the generator/origin core is saturated and the added p99 above measures the harness as much as the proxy\n", d/1000)
	}
	harnessWarning(w, r, "rate")
	if _, ok := r["rate2.target_rps"]; ok {
		fmt.Fprintf(w, "\n2b. The same at %s req/s (%s), where the harness keeps up\n", r.int("rate2.target_rps"), r["rate2.basis"])
		rateTable("rate2")
		harnessWarning(w, r, "rate2")
		bp, okbp := r.diff("rate2.pbxgate.p99_us", "rate2.direct.p99_us")
		bh, okbh := r.diff("rate2.haproxy.p99_us", "rate2.direct.p99_us")
		fmt.Fprintf(w, "added p99 at the lower rate: pbxgate %s, HAProxy %s (for information; the target is at half peak)\n",
			fmtNum(bp/1000, okbp, "%.3f ms"), fmtNum(bh/1000, okbh, "%.3f ms"))
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "3. TCP relay, %s stream(s) of %s bytes each way, best of %s (client speaks first; down = origin sends; congestion control %s)\n",
		r["tcp.streams"], r.int("tcp.bytes"), r["tcp.repeat"], cmp.Or(r["tcp.cc"], "n/a"))
	secsGB := func(key, dir string) string {
		v, ok := r.coreSecsPerGB(key, dir)
		return fmtNum(v, ok, "%.2f")
	}
	line("case", "down MB/s", "up MB/s", "CPU 0 busy down/up", "CPU 1 busy down/up", "CPU 1 s/GB down/up")
	for _, c := range []struct{ key, label string }{{"direct", "direct to origin"}, {"direct_xcore", "direct, client on the proxy's CPU"}, {"haproxy", "HAProxy, mode tcp"}, {"pbxgate", "pbxgate, protocols [tcp]"}} {
		p := "tcp." + c.key + "."
		if _, ok := r[p+"down_mbps"]; !ok {
			continue
		}
		line(c.label, r.int(p+"down_mbps"), r.int(p+"up_mbps"),
			r.pct(p+"down_cpu0_busy_pct")+" / "+r.pct(p+"up_cpu0_busy_pct"),
			r.pct(p+"down_cpu1_busy_pct")+" / "+r.pct(p+"up_cpu1_busy_pct"),
			secsGB(c.key, "down")+" / "+secsGB(c.key, "up"))
	}
	flush()
	relayWarning(w, r)
	td, okd := r.ratio("tcp.pbxgate.down_mbps", "tcp.direct.down_mbps")
	tu, oku := r.ratio("tcp.pbxgate.up_mbps", "tcp.direct.up_mbps")
	tmin, okmin := math.Min(td, tu), okd && oku
	v["tcp_relay"] = check("pbxgate TCP relay >= 0.80 of direct (worse direction)", tmin, okmin, func(x float64) bool { return x >= 0.8 })
	fmt.Fprintf(w, "pbxgate/direct: down %s, up %s [%s] (target >= 0.80)\n", fmtNum(td, okd, "%.2f"), fmtNum(tu, oku, "%.2f"), v["tcp_relay"])
	if _, ok := r["tcp.direct_xcore.down_mbps"]; ok {
		xd, okxd := r.ratio("tcp.pbxgate.down_mbps", "tcp.direct_xcore.down_mbps")
		xu, okxu := r.ratio("tcp.pbxgate.up_mbps", "tcp.direct_xcore.up_mbps")
		hd, okhd := r.ratio("tcp.haproxy.down_mbps", "tcp.direct_xcore.down_mbps")
		hu, okhu := r.ratio("tcp.haproxy.up_mbps", "tcp.direct_xcore.up_mbps")
		fmt.Fprintf(w, "against the cross-core direct transfer (for information): pbxgate down %s, up %s; HAProxy down %s, up %s\n",
			fmtNum(xd, okxd, "%.2f"), fmtNum(xu, okxu, "%.2f"), fmtNum(hd, okhd, "%.2f"), fmtNum(hu, okhu, "%.2f"))
	}
	fmt.Fprintln(w)

	fmt.Fprintf(w, "4. %s idle TLS keep-alive connections (handshake + 1 request each, then idle)\n", r.int("rss.conns"))
	line("case", "open", "failed", "RSS before", "RSS with conns", "peak RSS", "KiB/conn", "setup s")
	for _, c := range []struct{ key, label string }{{"pbxgate", "pbxgate"}, {"pbxgate_memlimit", "pbxgate, GOMEMLIMIT=" + r["rss.memlimit"]}, {"haproxy", "HAProxy"}} {
		p := "rss." + c.key + "."
		if _, ok := r[p+"rss_kb"]; !ok {
			continue
		}
		per := "n/a"
		if d, ok := r.diff(p+"rss_kb", p+"rss_before_kb"); ok {
			if n, ok := r.num(p + "open"); ok && n > 0 {
				per = fmt.Sprintf("%.1f", d/n)
			}
		}
		line(c.label, r.int(p+"open"), r.int(p+"failed"), r.mb(p+"rss_before_kb"), r.mb(p+"rss_kb"), r.mb(p+"hwm_kb"), per, r[p+"setup_secs"])
	}
	flush()
	rss, okr := r.num("rss.pbxgate.rss_kb")
	open, _ := r.num("rss.pbxgate.open")
	want, _ := r.num("rss.conns")
	v["idle_tls_rss"] = check("pbxgate VmRSS with 10k idle TLS conns < 300 MB", rss*1024/1e6, okr && open == want && want > 0, func(x float64) bool { return x < 300 })
	fmt.Fprintf(w, "pbxgate RSS %s [%s] (target < 300 MB with every connection open)\n\n", fmtNum(rss*1024/1e6, okr, "%.0f MB"), v["idle_tls_rss"])

	if gb := r["gobench.names"]; gb != "" {
		fmt.Fprintln(w, "5. Go micro-benchmarks of the routing path (go test -bench -benchmem)")
		line("benchmark", "ns/op", "B/op", "allocs/op")
		for _, name := range strings.Fields(gb) {
			p := "gobench." + name + "."
			line(name, r[p+"ns_op"], r[p+"b_op"], r[p+"allocs_op"])
		}
		flush()
		over := allocOffenders(r, strings.Fields(gb))
		v["routing_allocs"] = check("sniff + route decision allocates nothing beyond the read buffer", float64(len(over)), true, func(x float64) bool { return x == 0 })
		fmt.Fprintf(w, "routing path allocations [%s] (0 allocs/op; Prepare may allocate the replay buffer and the Conn: <= 2)", v["routing_allocs"])
		if len(over) > 0 {
			fmt.Fprintf(w, ": over in %s", strings.Join(over, ", "))
		}
		fmt.Fprintln(w)
	}
	return v
}

// allocOffenders lists the micro-benchmarks that allocate more than the
// routing path may: nothing, except Prepare, which hands on the replay
// buffer and the connection (two allocations).
func allocOffenders(r results, names []string) []string {
	var over []string
	for _, name := range names {
		n, ok := r.num("gobench." + name + ".allocs_op")
		if !ok {
			continue
		}
		allowed := 0.0
		if name == "Prepare" {
			allowed = 2
		}
		if n > allowed {
			over = append(over, fmt.Sprintf("%s (%g)", name, n))
		}
	}
	return over
}
