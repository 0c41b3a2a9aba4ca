package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// compareMain is "fraudflood compare FILE.json...": the runs' results side
// by side. It returns the exit status: 0 when every run passed, 1 when one
// did not, 2 when a file cannot be read.
func compareMain(w io.Writer, args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: fraudflood compare FILE.json...")
		return 2
	}
	reps := make([]*report, 0, len(args))
	for _, p := range args {
		r, err := readReport(p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fraudflood compare: %v\n", err)
			return 2
		}
		reps = append(reps, r)
	}
	printCompare(w, reps)
	for _, r := range reps {
		if !r.Verdict.Pass {
			return 1
		}
	}
	return 0
}

// maxReport bounds a results file.
const maxReport = 64 << 20

// readReport reads one run's JSON results.
func readReport(path string) (*report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReport+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxReport {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxReport)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Quiet == nil || r.Flood == nil {
		return nil, fmt.Errorf("%s: %w", path, errors.New("no quiet or flood phase: not fraudflood results"))
	}
	return &r, nil
}

// mode names how a run enforced bans: the meta "mode" when given (fraud.sh
// sets it), else from whether the kernel blacklist was on.
func (r *report) mode() string {
	if m := r.Meta["mode"]; m != "" {
		return m
	}
	if r.Kernel != nil {
		return "kernel"
	}
	return "user space"
}

// printCompare writes one line per run, then each run's verdict.
func printCompare(w io.Writer, reps []*report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "bans enforced\tquiet p99 ms\tflood p99 ms\tp99 ratio\tp99 ms from 2nd s\tafter-burst p99 ms\tflood success %\tpbxgate CPU s\tattempts\tanswered\trefused\theld\tconnect timeouts\tkernel drops\tresult\t")
	for _, r := range reps {
		after, drops, rest := "-", "-", "-"
		if r.FloodRest != nil {
			rest = fmt.Sprintf("%.3f", r.FloodRest.P99)
		}
		if r.FloodBanned != nil {
			after = fmt.Sprintf("%.3f", r.FloodBanned.P99)
		}
		if r.Kernel != nil {
			drops = fmt.Sprintf("%d", r.Kernel.DropsFlood)
		}
		a := r.Attack
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%.3f\t%s\t%s\t%.3f\t%.2f\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n",
			r.mode(), r.Quiet.P99, r.Flood.P99, r.Ratio, rest, after, r.Flood.SuccessPct, r.Flood.GatewayCPU,
			a.Attempts, a.Answered401+a.AnsweredOther, a.Refused, a.Held, a.ConnectTimeouts, drops, passFail(r.Verdict.Pass))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range reps {
		v := r.Verdict
		fmt.Fprintf(w, "%s (%s, commit %s): success >= %g %%: %s (%.3f %%); p99 flood / quiet <= %g: %s (%.3f); RESULT: %s\n",
			r.mode(), orNone(r.Meta["date"]), orNone(r.Meta["commit"]), v.MinSuccessPct, passFail(v.SuccessOK), r.Flood.SuccessPct,
			v.MaxRatio, passFail(v.RatioOK), r.Ratio, passFail(v.Pass))
		for _, p := range v.Problems {
			fmt.Fprintf(w, "  check failed: %s\n", p)
		}
	}
}
