package main

import (
	"math"
	"os"
	"strings"
	"testing"
)

// The testdata files are real sipp 3.6.1 -trace_stat files from
// bench/sip.sh: 1,000 calls at 500/s that all succeeded, and 16,000 at
// 8,000/s where the harness fell behind.
func TestParseSippStat(t *testing.T) {
	tests := []struct {
		file            string
		want            sippStat
		calls           int64
		rate            float64
		pass            bool
		achievedAtLeast float64
		achievedAtMost  float64
	}{
		{"testdata/stat-ok.csv", sippStat{Created: 1000, OK: 1000, Failed: 0, Retrans: 0, Target: 500}, 1000, 500, true, 490, 500},
		{"testdata/stat-failed.csv", sippStat{Created: 16000, OK: 15717, Failed: 283, Retrans: 3787, Target: 8000}, 16000, 8000, false, 2000, 3000},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			f, err := os.Open(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := parseSippStat(f)
			if err != nil {
				t.Fatal(err)
			}
			secs := got.Secs
			got.Secs = 0
			if got != tc.want {
				t.Errorf("parseSippStat = %+v, want %+v", got, tc.want)
			}
			got.Secs = secs
			if a := got.Achieved(); a < tc.achievedAtLeast || a > tc.achievedAtMost {
				t.Errorf("Achieved = %.1f over %.3f s, want %v..%v", a, secs, tc.achievedAtLeast, tc.achievedAtMost)
			}
			if p := got.Pass(tc.calls, tc.rate); p != tc.pass {
				t.Errorf("Pass = %v, want %v", p, tc.pass)
			}
		})
	}
}

func TestPass(t *testing.T) {
	// 5,000 calls at 1,000/s: on schedule 5 s, kept up until 5/0.95 + 0.5 s.
	limit := 5000/(0.95*1000) + lateSlack
	tests := []struct {
		name string
		st   sippStat
		pass bool
	}{
		{"on time", sippStat{OK: 5000, Secs: 5.01}, true},
		{"a last retransmission", sippStat{OK: 5000, Secs: 5.51}, true},
		{"just in time", sippStat{OK: 5000, Secs: limit}, true},
		{"late", sippStat{OK: 5000, Secs: limit + 0.01}, false},
		{"one failed", sippStat{OK: 4999, Failed: 1, Secs: 5}, false},
		{"cut short", sippStat{OK: 4000, Secs: 5}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.st.Pass(5000, 1000); got != tc.pass {
				t.Errorf("Pass = %v, want %v (%+v, limit %.3f s)", got, tc.pass, tc.st, limit)
			}
		})
	}
	if a := (sippStat{OK: 10}).Achieved(); a != 0 || math.IsNaN(a) {
		t.Errorf("Achieved with no time = %v, want 0", a)
	}
}

func TestParseSippStatRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":       "",
		"header only": "StartTime;SuccessfulCall(C);\n",
		"garbage":     "StartTime;CurrentTime;SuccessfulCall(C);FailedCall(C);OutgoingCall(C);Retransmissions(C);TargetRate;\nx;y;z;1;2;3;4;\n",
	} {
		t.Run(name, func(t *testing.T) {
			if st, err := parseSippStat(strings.NewReader(in)); err == nil {
				t.Errorf("parseSippStat = %+v, want an error", st)
			}
		})
	}
}
