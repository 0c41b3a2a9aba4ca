package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	raw := `meta.date=2026-11-22T00:00:00Z
meta.rounds=3
flood.user.r1.sent=3000000
flood.user.r1.secs=10
flood.user.r1.size=284
flood.user.r1.pbx_cpu=9
flood.user.r1.host_busy=20
flood.user.r1.flood_cpu=10
flood.user.r1.kernel_drops=0
flood.user.r1.delivered=2900000
flood.user.r1.rcvbuf_errors=100000
flood.user.r2.sent=1000000
flood.user.r2.secs=10
flood.user.r2.pbx_cpu=1
flood.user.r2.delivered=1000000
flood.user.r3.sent=2000000
flood.user.r3.secs=10
flood.user.r3.pbx_cpu=4
flood.user.r3.delivered=2000000
flood.kernel.r1.sent=6000000
flood.kernel.r1.secs=10
flood.kernel.r1.pbx_cpu=0.01
flood.kernel.r1.kernel_drops=5990000
flood.kernel.r1.delivered=1000
`
	cases := []struct {
		name     string
		raw      string
		pass     bool
		contains []string
	}{
		{"kernel drops too few", raw, false, []string{"200,000", "2.000", "RESULT: FAIL"}},
		{"kernel drops all", strings.Replace(raw, "kernel_drops=5990000", "kernel_drops=6000000", 1), true, []string{"RESULT: PASS", "s saved"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "raw.txt")
			if err := os.WriteFile(in, []byte(c.raw), 0o600); err != nil {
				t.Fatal(err)
			}
			txt, js := filepath.Join(dir, "out.txt"), filepath.Join(dir, "out.json")
			pass, err := report([]string{in, txt, js})
			if err != nil {
				t.Fatal(err)
			}
			if pass != c.pass {
				t.Errorf("pass = %v, want %v", pass, c.pass)
			}
			b, _ := os.ReadFile(txt)
			for _, w := range c.contains {
				if !strings.Contains(string(b), w) {
					t.Errorf("report lacks %q:\n%s", w, b)
				}
			}
			var doc struct {
				Cases []row `json:"cases"`
			}
			jb, _ := os.ReadFile(js)
			if err := json.Unmarshal(jb, &doc); err != nil {
				t.Fatal(err)
			}
			// user: medians of 3 rounds; offered 300k/s (3M/10s) is round 1,
			// pbxgate CPU per Mpkt: 3, 1, 2 -> 2.
			if len(doc.Cases) != 2 || doc.Cases[0].Rounds != 3 || doc.Cases[0].PbxPerM != 2 || doc.Cases[0].OfferedPPS != 200000 {
				t.Errorf("cases %+v", doc.Cases)
			}
		})
	}
	if _, err := report([]string{filepath.Join(t.TempDir(), "missing"), "a", "b"}); err == nil {
		t.Error("missing raw file accepted")
	}
}
