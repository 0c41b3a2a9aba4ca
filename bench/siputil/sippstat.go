package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// sippStat is the last line of a sipp -trace_stat file: the cumulative
// counters of a finished run.
type sippStat struct {
	Created int64   // OutgoingCall(C): calls the UAC started
	OK      int64   // SuccessfulCall(C)
	Failed  int64   // FailedCall(C)
	Retrans int64   // Retransmissions(C)
	Target  float64 // TargetRate: the -r rate, calls per second
	Secs    float64 // CurrentTime - StartTime: from start to the last call's end
}

// Achieved is the rate of successful calls over the whole run.
func (s sippStat) Achieved() float64 {
	if s.Secs <= 0 {
		return 0
	}
	return float64(s.OK) / s.Secs
}

// lateSlack is how much later than its schedule a run may end and still
// count as keeping up: one SIP T1 interval, so that a last call whose
// datagram was lost once and retransmitted after 500 ms does not fail a
// run of a few seconds (retransmissions are reported separately).
const lateSlack = 0.5

// Pass tells whether a run of calls calls at rate calls/s kept up: every
// call succeeded, and the run ended no later than at 95 % of the rate plus
// lateSlack seconds: neither the generator nor the forwarder fell behind.
func (s sippStat) Pass(calls int64, rate float64) bool {
	return s.Failed == 0 && s.OK == calls && s.Secs <= float64(calls)/(0.95*rate)+lateSlack
}

// parseSippStat reads a -trace_stat CSV: a header line of ';'-separated
// column names, then one line per -fd period and a final one at exit. Time
// columns look like "2026-11-22\t01:28:34.086900\t1795310914.086900": the
// last tab-separated part is the Unix time.
func parseSippStat(r io.Reader) (sippStat, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	var header, last []string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		fields := strings.Split(line, ";")
		if header == nil {
			header = fields
			continue
		}
		last = fields
	}
	if err := sc.Err(); err != nil {
		return sippStat{}, err
	}
	if header == nil || last == nil {
		return sippStat{}, fmt.Errorf("no statistics line (is sipp's -trace_stat file empty?)")
	}
	col := map[string]string{}
	for i, name := range header {
		if i < len(last) {
			col[name] = last[i]
		}
	}
	var st sippStat
	var errs []string
	integer := func(name string, dst *int64) {
		v, err := strconv.ParseInt(strings.TrimSpace(col[name]), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s=%q", name, col[name]))
		}
		*dst = v
	}
	integer("OutgoingCall(C)", &st.Created)
	integer("SuccessfulCall(C)", &st.OK)
	integer("FailedCall(C)", &st.Failed)
	integer("Retransmissions(C)", &st.Retrans)
	target, err := strconv.ParseFloat(strings.TrimSpace(col["TargetRate"]), 64)
	if err != nil {
		errs = append(errs, fmt.Sprintf("TargetRate=%q", col["TargetRate"]))
	}
	st.Target = target
	start, ok1 := unixTime(col["StartTime"])
	now, ok2 := unixTime(col["CurrentTime"])
	if !ok1 || !ok2 {
		errs = append(errs, fmt.Sprintf("StartTime=%q CurrentTime=%q", col["StartTime"], col["CurrentTime"]))
	}
	st.Secs = now - start
	if len(errs) > 0 {
		return sippStat{}, fmt.Errorf("unreadable columns: %s", strings.Join(errs, ", "))
	}
	return st, nil
}

func unixTime(v string) (float64, bool) {
	parts := strings.Split(strings.TrimSpace(v), "\t")
	t, err := strconv.ParseFloat(parts[len(parts)-1], 64)
	return t, err == nil && t > 0
}

// sippstat prints the summary of one sipp run as a SIPPSTAT line for
// bench/sip.sh; calls and rate are the run's -m and -r.
func sippstat(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: siputil sippstat CALLS RATE FILE")
	}
	calls, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || calls <= 0 {
		return fmt.Errorf("sippstat: CALLS must be a positive integer, got %q", args[0])
	}
	rate, err := strconv.ParseFloat(args[1], 64)
	if err != nil || rate <= 0 {
		return fmt.Errorf("sippstat: RATE must be positive, got %q", args[1])
	}
	f, err := os.Open(args[2])
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := parseSippStat(f)
	if err != nil {
		return fmt.Errorf("%s: %w", args[2], err)
	}
	pass := 0
	if st.Pass(calls, rate) {
		pass = 1
	}
	fmt.Printf("SIPPSTAT pass=%d created=%d ok=%d failed=%d retrans=%d secs=%.3f achieved=%.1f\n",
		pass, st.Created, st.OK, st.Failed, st.Retrans, st.Secs, st.Achieved())
	return nil
}
