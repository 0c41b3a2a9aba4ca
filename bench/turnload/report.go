package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

// The report of bench/turn.sh. Its raw results are flat dotted key=value
// lines (bench/internal/kv):
//
//	meta.*                       the machine, versions, knobs
//	STEP.CASE.rN.KEY             throughput run N (binding, alloc, relay):
//	                             the keys of its TURNLOAD line
//	streams.CASE.n               the highest stream count that passed
//	streams.CASE.fail_n          the lowest that failed
//	streams.CASE.steps           the search, count:outcome
//	streams.CASE.best.KEY        the TURNLOAD line of the run at n
//	mem.CASE.KEY                 the mem run's TURNLOAD line

// cases are the servers, in table order; pbxgate is compared with coturn.
var cases = []struct{ key, label string }{
	{"coturn", "coturn"},
	{"pbxgate", "pbxgate"},
}

// throughput steps: the raw key, the table's title and unit, the TURNLOAD
// keys of the runs' loss column.
var throughputSteps = []struct {
	key, title, unit, lost, each string
}{
	{"binding", "STUN Binding requests/s", "requests/s", "lost", "request"},
	{"alloc", "Allocations/s (Allocate with the 401 round trip, then Refresh lifetime 0)", "allocations/s", "failed", "allocation"},
	{"relay", "Relayed packets/s (172-byte payloads through channels to an echo peer; both crossings count)", "packets/s", "lost", "relayed packet"},
}

// busyOther is the share of a CPU other processes may use during a run
// before the report calls the run disturbed.
const busyOther = 0.10

// harnessBusy is the share of its CPU the generator may use before the
// report warns that the harness may be the limit.
const harnessBusy = 0.90

type results struct{ kv.Results }

func (r results) num(key string) (float64, bool) { return r.Num(key) }

// rounds returns the values of KEY of every throughput run of step and
// case, in round order (runs without it are skipped).
func (r results) rounds(step, c, key string) []float64 {
	var out []float64
	for i := 1; i <= 1000; i++ {
		p := fmt.Sprintf("%s.%s.r%d.", step, c, i)
		if _, ran := r.Results[p+"mode"]; !ran {
			if _, failed := r.Results[p+"error"]; !failed {
				break
			}
			continue
		}
		if v, ok := r.num(p + key); ok {
			out = append(out, v)
		}
	}
	return out
}

// sums returns, per throughput run of step and case, the sum of keys
// (runs with none of them are skipped).
func (r results) sums(step, c string, keys ...string) []float64 {
	var out []float64
	for i := 1; i <= 1000; i++ {
		p := fmt.Sprintf("%s.%s.r%d.", step, c, i)
		_, ran := r.Results[p+"mode"]
		_, bad := r.Results[p+"error"]
		if !ran && !bad {
			break
		}
		sum, any := 0.0, false
		for _, k := range keys {
			if v, ok := r.num(p + k); ok {
				sum, any = sum+v, true
			}
		}
		if any {
			out = append(out, sum)
		}
	}
	return out
}

// runs returns the number of throughput runs of step and case, and how
// many failed.
func (r results) runs(step, c string) (n, failed int) {
	for i := 1; i <= 1000; i++ {
		p := fmt.Sprintf("%s.%s.r%d.", step, c, i)
		_, ran := r.Results[p+"mode"]
		_, bad := r.Results[p+"error"]
		if !ran && !bad {
			break
		}
		n++
		if bad {
			failed++
		}
	}
	return n, failed
}

// median of vs; false when empty.
func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

// perRun divides a per-run key by the run's secs, per round.
func (r results) perRun(step, c, key string) []float64 {
	var out []float64
	for i := 1; i <= 1000; i++ {
		p := fmt.Sprintf("%s.%s.r%d.", step, c, i)
		_, ran := r.Results[p+"mode"]
		_, bad := r.Results[p+"error"]
		if !ran && !bad {
			break
		}
		v, ok1 := r.num(p + key)
		secs, ok2 := r.num(p + "secs")
		if ok1 && ok2 && secs > 0 {
			out = append(out, v/secs)
		}
	}
	return out
}

func check(target string, v float64, ok, pass bool) kv.Verdict {
	return kv.Check(target, math.Round(v*1000)/1000, ok, pass)
}

// report reads the raw results, writes the table to stdout and txtPath and
// the JSON summary to jsonPath, and tells whether every target was met.
func report(stdout io.Writer, rawPath, txtPath, jsonPath string) (bool, error) {
	raw, err := kv.Read(rawPath)
	if err != nil {
		return false, err
	}
	r := results{raw}
	txt, err := os.Create(txtPath)
	if err != nil {
		return false, err
	}
	defer txt.Close()
	verdicts, derived := writeTable(io.MultiWriter(stdout, txt), r)
	if err := txt.Close(); err != nil {
		return false, err
	}
	all := len(verdicts) > 0
	for _, v := range verdicts {
		if v.Pass == nil || !*v.Pass {
			all = false
		}
	}
	out, err := json.MarshalIndent(map[string]any{
		"results":  raw.Nested(),
		"derived":  derived,
		"verdicts": verdicts,
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

func writeTable(w io.Writer, r results) (map[string]kv.Verdict, map[string]float64) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	line := func(cols ...string) { fmt.Fprintln(tw, strings.Join(cols, "\t")+"\t") }
	m := r.Results

	fmt.Fprintf(w, "pbxgate TURN benchmarks, %s\n", m["meta.date"])
	fmt.Fprintf(w, "machine: %s, %s cores, %s; %s\n", m["meta.cpu"], m["meta.cores"], m["meta.kernel"], m["meta.os"])
	fmt.Fprintf(w, "pbxgate %s at %s (%s), %s\n", m["meta.pbxgate_version"], m["meta.commit"], m["meta.go"], m["meta.coturn"])
	fmt.Fprintf(w, "pinning: %s\n", m["meta.pinning"])
	fmt.Fprintf(w, "relay ports: %s; all traffic UDP over loopback, REST credentials\n", m["meta.relay_ports"])
	fmt.Fprintf(w, "CPU idle just before the run: %s%%; load average at start %s, at end %s\n", m["meta.idle_before_pct"], m["meta.loadavg"], m["meta.loadavg_end"])
	fmt.Fprintln(w, "CPU columns: share of one CPU over the measured window; others' CPU: what other processes used, on the server's CPU when pinned")
	if idle, ok := r.num("meta.idle_before_pct"); ok && idle < 90 {
		fmt.Fprintf(w, "WARNING: the machine was busy before the run (%.0f%% idle): other processes compete for the CPUs and the numbers are unreliable\n", idle)
	}
	if note := m["meta.pbxgate_note"]; note != "" {
		fmt.Fprintf(w, "NOTE: %s\n", note)
	}
	fmt.Fprintln(w)

	v := map[string]kv.Verdict{}
	d := map[string]float64{}
	ratioLine := func(key, what string, a, b float64, ok bool, extra string) {
		v[key] = check("pbxgate "+what+" >= coturn's, same run", a/b, ok && b > 0, ok && b > 0 && a >= b)
		ratio := "n/a"
		if ok && b > 0 {
			ratio = fmt.Sprintf("%.2f", a/b)
			d[key+"_ratio"] = math.Round(a/b*1000) / 1000
		}
		fmt.Fprintf(w, "   pbxgate/coturn %s %s [%s] (target >= 1.00)%s\n", what, ratio, v[key], extra)
	}

	for n, s := range throughputSteps {
		fmt.Fprintf(w, "%d. %s\n", n+1, s.title)
		fmt.Fprintf(w, "   closed loop (%s), median of %s rounds of %s s, the cases alternating\n", m[s.key+".args"], m["meta.rounds"], m["meta.duration"])
		ran := false
		retried := 0
		for _, c := range cases {
			if k, _ := r.runs(s.key, c.key); k > 0 {
				ran = true
			}
			for _, x := range r.rounds(s.key, c.key, "retries") {
				retried += int(x)
			}
		}
		if !ran {
			fmt.Fprintln(w, "   not run")
			ratioLine(s.key, s.unit, 0, 0, false, "")
			fmt.Fprintln(w)
			continue
		}
		if idle, ok := r.num(s.key + ".idle_before_pct"); ok && idle < 90 {
			fmt.Fprintf(w, "WARNING: CPU idle just before this step was %.0f%%: these numbers are unreliable\n", idle)
		}
		if retried > 0 {
			fmt.Fprintf(w, "   %d run(s) were repeated because other processes took the server's CPU\n", retried)
		}
		line("case", s.unit, "each round", s.lost, "server drops", "server CPU", "CPU µs per "+s.each, "generator CPU", "others' CPU")
		med := map[string]float64{}
		medOK := map[string]bool{}
		cpuEach := map[string]float64{}
		for _, c := range cases {
			runs, failed := r.runs(s.key, c.key)
			if runs == 0 {
				continue
			}
			rates := r.rounds(s.key, c.key, "rate")
			rate, ok := median(rates)
			med[c.key], medOK[c.key] = rate, ok
			each := make([]string, len(rates))
			for i, x := range rates {
				each[i] = kv.Group(int64(math.Round(x)))
			}
			if failed > 0 {
				each = append(each, fmt.Sprintf("(%d failed)", failed))
			}
			lost, _ := median(r.rounds(s.key, c.key, s.lost))
			drops, okD := median(r.sums(s.key, c.key, "drops_server_listener", "drops_server_relays"))
			srv, okS := median(r.perRun(s.key, c.key, "server_cpu"))
			us, okU := median(r.rounds(s.key, c.key, "server_cpu_us"))
			gen, okG := median(r.perRun(s.key, c.key, "gen_cpu"))
			oth, okO := median(r.perRun(s.key, c.key, r.otherKey(s.key+"."+c.key+".r1.")))
			if okU {
				cpuEach[c.key] = us
				d[s.key+"_cpu_us_"+c.key] = us
			}
			if ok {
				d[s.key+"_rate_"+c.key] = math.Round(rate)
			}
			line(c.label, fmtNum(rate, ok, "%.0f", true), strings.Join(each, " "), fmtNum(lost, true, "%.0f", true),
				fmtNum(drops, okD, "%.0f", true), fmtNum(100*srv, okS, "%.0f%%", false), fmtNum(us, okU, "%.2f", false), fmtNum(100*gen, okG, "%.0f%%", false),
				fmtNum(100*oth, okO, "%.0f%%", false))
		}
		tw.Flush()
		extra := ""
		if a, ok := cpuEach["pbxgate"]; ok && a > 0 {
			if b, ok := cpuEach["coturn"]; ok {
				extra = fmt.Sprintf("; CPU per %s coturn/pbxgate %.2f", s.each, b/a)
				d[s.key+"_cpu_ratio_coturn_over_pbxgate"] = math.Round(b/a*1000) / 1000
			}
		}
		ratioLine(s.key, s.unit, med["pbxgate"], med["coturn"], medOK["pbxgate"] && medOK["coturn"], extra)
		notes(w, r, s.key)
		fmt.Fprintln(w)
	}

	// Streams.
	fmt.Fprintf(w, "4. Concurrent G.711-like streams: 172-byte payload every 20 ms per stream and direction (echo peer), open loop;\n")
	fmt.Fprintf(w, "   sustained = loss < 0.1 %% of the packets of a %s s window and the generator on schedule; doubling from %s, then %s bisections, up to %s tries per count\n",
		m["meta.streams_window"], m["meta.streams_start"], m["meta.streams_bisect"], m["meta.streams_tries"])
	sN := map[string]float64{}
	sOK := map[string]bool{}
	ran := false
	for _, c := range cases {
		if _, ok := m["streams."+c.key+".n"]; ok {
			ran = true
		}
	}
	if !ran {
		fmt.Fprintln(w, "   not run")
	} else {
		if idle, ok := r.num("streams.idle_before_pct"); ok && idle < 90 {
			fmt.Fprintf(w, "WARNING: CPU idle just before this step was %.0f%%: these numbers are unreliable\n", idle)
		}
		line("case", "streams", "first failing", "loss", "packets/s", "RTT p50", "RTT p99", "server CPU", "CPU µs per packet", "generator CPU", "others' CPU")
		for _, c := range cases {
			p := "streams." + c.key + "."
			n, ok := r.num(p + "n")
			if !ok {
				continue
			}
			sN[c.key], sOK[c.key] = n, true
			d["streams_"+c.key] = n
			fail := "none <= " + m["meta.streams_max"]
			if f, ok := r.num(p + "fail_n"); ok {
				fail = kv.Group(int64(f))
			}
			b := p + "best."
			secs, _ := r.num(b + "secs")
			frac := func(k string) (float64, bool) {
				x, ok := r.num(b + k)
				return x / secs, ok && secs > 0
			}
			srv, okS := frac("server_cpu")
			gen, okG := frac("gen_cpu")
			oth, okO := frac(r.otherKey(b))
			loss, okL := r.num(b + "loss_pct")
			pps, okP := r.num(b + "pps")
			p50, ok50 := r.num(b + "rtt_p50_ms")
			p99, ok99 := r.num(b + "rtt_p99_ms")
			us, okU := r.num(b + "server_cpu_us")
			line(c.label, kv.Group(int64(n)), fail, fmtNum(loss, okL, "%.3f%%", false), fmtNum(pps, okP, "%.0f", true),
				fmtNum(p50, ok50, "%.2f ms", false), fmtNum(p99, ok99, "%.2f ms", false), fmtNum(100*srv, okS, "%.0f%%", false),
				fmtNum(us, okU, "%.2f", false), fmtNum(100*gen, okG, "%.0f%%", false), fmtNum(100*oth, okO, "%.0f%%", false))
		}
		tw.Flush()
		for _, c := range cases {
			if st := m["streams."+c.key+".steps"]; st != "" {
				fmt.Fprintf(w, "   steps %s: %s\n", c.key, st)
			}
		}
		for _, c := range cases {
			f := "streams." + c.key + ".fail."
			n, ok := r.num(f + "n")
			if !ok {
				continue
			}
			secs, _ := r.num(f + "secs")
			srv, _ := r.num(f + "server_cpu")
			cpu := ""
			if secs > 0 {
				cpu = fmt.Sprintf(", server CPU %.0f%%", 100*srv/secs)
			}
			sent, _ := r.num(f + "sent")
			peer, _ := r.num(f + "peer_rx")
			echoed, _ := r.num(f + "echoed")
			fmt.Fprintf(w, "   %s at %s (first failing): loss %s%% (%s lost on the way to the peer, %s on the way back)%s; datagrams the kernel dropped for full socket buffers during the run: server listener %s, server relays %s, generator %s\n",
				c.key, kv.Group(int64(n)), m[f+"loss_pct"], kv.Group(int64(sent-peer)), kv.Group(int64(peer-echoed)), cpu,
				m[f+"drops_server_listener"], m[f+"drops_server_relays"], m[f+"drops_tool"])
		}
	}
	ratioLine("streams", "streams", sN["pbxgate"], sN["coturn"], sOK["pbxgate"] && sOK["coturn"], "")
	for _, c := range cases {
		b := "streams." + c.key + ".best."
		secs, _ := r.num(b + "secs")
		if gen, ok := r.num(b + "gen_cpu"); ok && secs > 0 && gen/secs >= harnessBusy {
			fmt.Fprintf(w, "NOTE: at %s's best count the generator used %.0f%% of its CPU: the next count may have failed for the harness, not the server\n", c.key, 100*gen/secs)
		}
	}
	fmt.Fprintln(w)

	// Memory.
	fmt.Fprintln(w, "5. Memory: a fresh server, VmRSS idle and with allocations held (each with a channel to a peer); reported, no target")
	levels := strings.Split(m["meta.mem_levels"], ",")
	ran = false
	for _, c := range cases {
		if _, ok := m["mem."+c.key+".rss_idle_kb"]; ok {
			ran = true
		}
	}
	if !ran || len(levels) == 0 {
		fmt.Fprintln(w, "   not run")
		for _, c := range cases {
			if e := m["mem."+c.key+".error"]; e != "" {
				fmt.Fprintf(w, "   %s failed: %s\n", c.key, e)
			}
		}
	} else {
		cols := []string{"case", "idle RSS"}
		for _, l := range levels {
			cols = append(cols, "RSS with "+groupStr(l), "MiB per 1,000 at "+groupStr(l))
		}
		line(cols...)
		for _, c := range cases {
			p := "mem." + c.key + "."
			idle, ok := r.num(p + "rss_idle_kb")
			if !ok {
				if e := m[p+"error"]; e != "" {
					line(c.label, "failed: "+e)
				}
				continue
			}
			row := []string{c.label, fmtNum(idle/1024, true, "%.1f MiB", false)}
			for _, l := range levels {
				rss, ok1 := r.num(p + "rss_" + l + "_kb")
				per, ok2 := r.num(p + "kb_per_1000_at_" + l)
				row = append(row, fmtNum(rss/1024, ok1, "%.1f MiB", false), fmtNum(per/1024, ok2, "%.2f", false))
				if ok2 {
					d["mem_mib_per_1000_at_"+l+"_"+c.key] = math.Round(per/1024*100) / 100
				}
			}
			line(row...)
		}
		tw.Flush()
	}
	return v, d
}

// otherKey is the key of what other processes used during a run whose
// keys start with prefix: on the server's CPU when the run knew it
// (pinned), else on the whole machine.
func (r results) otherKey(prefix string) string {
	if _, ok := r.Results[prefix+"other_cpu_server"]; ok {
		return "other_cpu_server"
	}
	return "other_cpu"
}

// notes warns about disturbed runs and a busy generator in a throughput step.
func notes(w io.Writer, r results, step string) {
	for _, c := range cases {
		disturbed := 0
		for _, o := range r.perRun(step, c.key, r.otherKey(step+"."+c.key+".r1.")) {
			if o > busyOther {
				disturbed++
			}
		}
		if disturbed > 0 {
			fmt.Fprintf(w, "WARNING: in %d %s run(s) other processes used over %.0f%% of the server's CPU even after retries: those runs are unreliable\n", disturbed, c.key, 100*busyOther)
		}
		if gen, ok := median(r.perRun(step, c.key, "gen_cpu")); ok && gen >= harnessBusy {
			fmt.Fprintf(w, "NOTE: with %s the generator used %.0f%% of its CPU: the harness may be the limit; the CPU per operation still compares the servers\n", c.key, 100*gen)
		}
	}
}

func fmtNum(v float64, ok bool, format string, grouped bool) string {
	if !ok {
		return "n/a"
	}
	if grouped {
		return kv.Group(int64(math.Round(v)))
	}
	return fmt.Sprintf(format, v)
}

func groupStr(s string) string {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return kv.Group(n)
}
