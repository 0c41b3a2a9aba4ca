package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

const rawAll = `meta.date=2026-11-22T00:00:00Z
meta.cores=2
meta.idle_before_pct=99
meta.step_secs=5
call.direct.rate=6000
call.kamailio.rate=5000
call.kamailio.fail_rate=6000
call.pbxgate.rate=4500
call.pbxgate.fail_rate=5000
call.pbxgate.steps=1000:ok 2000:ok 4000:ok 8000:fail(12_failed,3000/s) 6000:fail(1_failed,5000/s) 5000:fail(1_failed,4900/s) 4500:ok
call.kamailio.cpu.4000=1.00
call.kamailio.cpu.8000=2.00
call.kamailio.cpu.9000=2.50
call.pbxgate.cpu.4000=1.50
call.pbxgate.cpu.8000=3.00
call.pbxgate.cpu_secs=1.70
call.pbxgate.secs=5.00
call.pbxgate.calls=22500
register.direct.rate=16000
register.kamailio.rate=4000
register.pbxgate.rate=6000
mem.udp.want=100000
mem.udp.ok=19800
mem.udp.open=19800
mem.udp.failed=0
mem.udp.rss_before_kb=17000
mem.udp.rss_kb=46700
mem.udp.capped_by=siputil-nofile-20000
mem.udp.port_range=28232
mem.tls.want=10000
mem.tls.ok=10000
mem.tls.open=10000
mem.tls.failed=0
mem.tls.rss_before_kb=17000
mem.tls.rss_kb=300000
`

func writeRaw(t *testing.T, raw string) (rawPath, txtPath, jsonPath string) {
	t.Helper()
	dir := t.TempDir()
	rawPath = filepath.Join(dir, "raw.txt")
	if err := os.WriteFile(rawPath, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	return rawPath, filepath.Join(dir, "out.txt"), filepath.Join(dir, "out.json")
}

type summary struct {
	Pass     bool                  `json:"pass"`
	Derived  map[string]float64    `json:"derived"`
	Verdicts map[string]kv.Verdict `json:"verdicts"`
	Results  map[string]any        `json:"results"`
}

func runReport(t *testing.T, raw string) (bool, string, summary) {
	t.Helper()
	rawPath, txtPath, jsonPath := writeRaw(t, raw)
	var stdout bytes.Buffer
	pass, err := report(&stdout, rawPath, txtPath, jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	txt, err := os.ReadFile(txtPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(txt, stdout.Bytes()) {
		t.Error("the text file differs from stdout")
	}
	var s summary
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("JSON: %v\n%s", err, b)
	}
	if s.Pass != pass {
		t.Errorf("JSON pass %v, report returned %v", s.Pass, pass)
	}
	return pass, string(txt), s
}

func verdictOf(t *testing.T, s summary, key string) string {
	t.Helper()
	v, ok := s.Verdicts[key]
	if !ok {
		t.Fatalf("no verdict %q in %v", key, s.Verdicts)
	}
	return v.String()
}

func TestReportVerdicts(t *testing.T) {
	t.Run("all met, UDP extrapolated", func(t *testing.T) {
		pass, txt, s := runReport(t, rawAll)
		if !pass {
			t.Errorf("pass = false, want true:\n%s", txt)
		}
		// 4500/5000 = 0.9; UDP: 17000 + 29700/19800*100000 = 167000 kB = 171 MB.
		if got := s.Derived["call_ratio_kamailio"]; got != 0.9 {
			t.Errorf("call_ratio_kamailio = %v, want 0.9", got)
		}
		if got := s.Derived["register_ratio_kamailio"]; got != 1.5 {
			t.Errorf("register_ratio_kamailio = %v, want 1.5", got)
		}
		// Both kept up at 4000 and 8000/s: 2 s and 3 s of CPU for 40,000 calls.
		if s.Derived["call_cpu_rate"] != 8000 || s.Derived["call_cpu_us_kamailio"] != 50 || s.Derived["call_cpu_us_pbxgate"] != 75 {
			t.Errorf("derived CPU = %v", s.Derived)
		}
		if got := s.Derived["udp_rss_mb_at_target"]; got != 171 {
			t.Errorf("udp_rss_mb_at_target = %v, want 171", got)
		}
		for _, want := range []string{
			"call rate pbxgate/Kamailio 0.90 [PASS] (target >= 0.80), pbxgate/direct 0.75",
			"pbxgate RSS with 100,000 UDP flows: 171 MB [PASS] (target <= 200 MB, extrapolated linearly from 19,800 (open-file limit: siputil-nofile-20000))",
			"pbxgate RSS with 10,000 TLS SIP connections: 307 MB [PASS] (target <= 400 MB)",
			"steps pbxgate: 1000:ok 2000:ok",
			"forwarder CPU per call at 8,000/s (the highest rate both kept up): Kamailio 50.0 µs, pbxgate 75.0 µs; Kamailio/pbxgate 0.67",
			"ephemeral port range has 28,232 ports",
		} {
			if !strings.Contains(txt, want) {
				t.Errorf("report lacks %q:\n%s", want, txt)
			}
		}
		// pbxgate's row: 1.7 s of CPU in 5 s, for 22,500 calls.
		if !regexp.MustCompile(`(?m)pbxgate, all policy on +4,500 .* 34% +75\.6\s*$`).MatchString(txt) {
			t.Errorf("pbxgate's call row lacks its CPU share and CPU per call:\n%s", txt)
		}
		if s.Verdicts["udp_rss"].Note == "" {
			t.Error("the UDP verdict does not say it was extrapolated")
		}
		if calls, ok := s.Results["call"].(map[string]any); !ok || calls["pbxgate"].(map[string]any)["rate"] != 4500.0 {
			t.Errorf("results.call = %v: want the raw numbers nested", s.Results["call"])
		}
	})
	tests := []struct {
		name    string
		replace [2]string
		key     string
		want    string
	}{
		{"call rate too low", [2]string{"call.pbxgate.rate=4500", "call.pbxgate.rate=3900"}, "call_vs_kamailio", "FAIL"},
		{"pbxgate not measured", [2]string{"call.pbxgate.rate=4500", ""}, "call_vs_kamailio", "n/a"},
		{"Kamailio never kept up", [2]string{"call.kamailio.rate=5000", "call.kamailio.rate=0"}, "call_vs_kamailio", "n/a"},
		{"TLS RSS too high", [2]string{"mem.tls.rss_kb=300000", "mem.tls.rss_kb=400000"}, "tls_rss", "FAIL"},
		{"a flow failed", [2]string{"mem.udp.failed=0", "mem.udp.failed=1\nmem.udp.failed_no-answer=1"}, "udp_rss", "FAIL"},
		{"no memory step", [2]string{"mem.udp.rss_kb=46700", ""}, "udp_rss", "n/a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pass, txt, s := runReport(t, strings.Replace(rawAll, tc.replace[0], tc.replace[1], 1))
			if got := verdictOf(t, s, tc.key); got != tc.want {
				t.Errorf("verdict %s = %s, want %s:\n%s", tc.key, got, tc.want, txt)
			}
			if pass {
				t.Errorf("pass = true with verdict %s %s", tc.key, tc.want)
			}
		})
	}
}

func TestReadResultsRejectsGarbage(t *testing.T) {
	rawPath, _, _ := writeRaw(t, "call.direct.rate=1\nnot a pair\n")
	if _, err := readResults(rawPath); err == nil || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("readResults: %v, want an error naming line 2", err)
	}
}
