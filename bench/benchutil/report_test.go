package main

import (
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/bench/internal/kv"
)

func TestReportVerdicts(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want map[string]*bool // nil: n/a
	}{
		{
			name: "all-pass",
			raw: `http.haproxy.rps=100
http.pbxgate.rps=90
http.haproxy_tls.rps=50
http.pbxgate_tls.rps=40
rate.direct.p99_us=100
rate.pbxgate.p99_us=900
tcp.direct.down_mbps=1000
tcp.direct.up_mbps=1000
tcp.pbxgate.down_mbps=900
tcp.pbxgate.up_mbps=800
rss.conns=10000
rss.pbxgate.open=10000
rss.pbxgate.rss_kb=200000
gobench.names=Classify/tls Prepare
gobench.Classify/tls.allocs_op=0
gobench.Prepare.allocs_op=2
`,
			want: map[string]*bool{"http_plain_vs_haproxy": ptr(true), "http_tls_vs_haproxy": ptr(true), "added_p99": ptr(true),
				"tcp_relay": ptr(true), "idle_tls_rss": ptr(true), "routing_allocs": ptr(true)},
		},
		{
			name: "all-fail",
			raw: `http.haproxy.rps=100
http.pbxgate.rps=79
http.haproxy_tls.rps=50
http.pbxgate_tls.rps=39
rate.direct.p99_us=100
rate.pbxgate.p99_us=1100
tcp.direct.down_mbps=1000
tcp.direct.up_mbps=1000
tcp.pbxgate.down_mbps=900
tcp.pbxgate.up_mbps=700
rss.conns=10000
rss.pbxgate.open=10000
rss.pbxgate.rss_kb=300000
gobench.names=Decide Prepare
gobench.Decide.allocs_op=1
gobench.Prepare.allocs_op=2
`,
			want: map[string]*bool{"http_plain_vs_haproxy": ptr(false), "http_tls_vs_haproxy": ptr(false), "added_p99": ptr(false),
				"tcp_relay": ptr(false), "idle_tls_rss": ptr(false), "routing_allocs": ptr(false)},
		},
		{
			name: "missing-is-na",
			raw: `http.haproxy.rps=100
rss.conns=10000
rss.pbxgate.open=9000
rss.pbxgate.rss_kb=1000
`,
			// Not every connection opened: the memory number does not count.
			want: map[string]*bool{"http_plain_vs_haproxy": nil, "added_p99": nil, "tcp_relay": nil, "idle_tls_rss": nil},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(dir, "raw.txt")
			if err := os.WriteFile(raw, []byte(tc.raw), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := report(io.Discard, raw, filepath.Join(dir, "out.txt"), filepath.Join(dir, "out.json")); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "out.json"))
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Targets map[string]kv.Verdict `json:"targets"`
			}
			if err := json.Unmarshal(b, &out); err != nil {
				t.Fatal(err)
			}
			for key, want := range tc.want {
				got := out.Targets[key].Pass
				switch {
				case want == nil && got != nil:
					t.Errorf("%s: got pass=%v, want n/a", key, *got)
				case want != nil && got == nil:
					t.Errorf("%s: got n/a, want pass=%v", key, *want)
				case want != nil && *got != *want:
					t.Errorf("%s: got pass=%v, want %v", key, *got, *want)
				}
			}
			txt, err := os.ReadFile(filepath.Join(dir, "out.txt"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(txt), "1. HTTP small response") {
				t.Errorf("table lacks the HTTP section:\n%s", txt)
			}
		})
	}
}

// TestHarnessWarning: with run.sh's pinning, a proxied constant-rate case
// that kept the generator/origin core 90 % busy or more is flagged, with
// the direct case's load and the generator's lag; below 90 %, or without
// pinning, nothing is said.
func TestHarnessWarning(t *testing.T) {
	r := results{
		"meta.pinning":               "wrk/loadgen/tcpstream/tlsidle and the origin servers on CPU 0 (...)",
		"rate.direct.cpu0_busy_pct":  "67",
		"rate.pbxgate.cpu0_busy_pct": "95",
		"rate.pbxgate.lag_p99_us":    "913",
		"rate.haproxy.cpu0_busy_pct": "89",
		"rate.haproxy.lag_p99_us":    "4000",
	}
	want := "WARNING: through pbxgate the generator/origin core (CPU 0) was 95 % busy (direct: 67 %); the generator's own lag p99 was 0.913 ms"
	checkWarning(t, r, func(w io.Writer, r results) { harnessWarning(w, r, "rate") }, want, "haproxy")
}

// checkWarning runs warn on r and expects exactly one line, containing want
// and not notWant (when set); then, with run.sh's pinning gone, nothing.
func checkWarning(t *testing.T, r results, warn func(io.Writer, results), want, notWant string) {
	t.Helper()
	var b strings.Builder
	warn(&b, r)
	if got := b.String(); !strings.Contains(got, want) || (notWant != "" && strings.Contains(got, notWant)) || strings.Count(got, "\n") != 1 {
		t.Errorf("got %q, want one line: %q", got, want)
	}
	r["meta.pinning"] = "none; proxies get 2 threads"
	b.Reset()
	if warn(&b, r); b.Len() != 0 {
		t.Errorf("without pinning: %q, want nothing", b.String())
	}
}

// TestRelayWarning: a proxied relay transfer that kept the ends' core 90 %
// busy or more while the proxy's core had time to spare is flagged per
// direction; a busy proxy core, or no pinning, is not.
func TestRelayWarning(t *testing.T) {
	r := results{
		"meta.pinning":                   "wrk/loadgen/tcpstream/tlsidle and the origin servers on CPU 0 (...)",
		"tcp.pbxgate.down_cpu0_busy_pct": "99",
		"tcp.pbxgate.down_cpu1_busy_pct": "41",
		"tcp.pbxgate.up_cpu0_busy_pct":   "85",
		"tcp.pbxgate.up_cpu1_busy_pct":   "40",
		"tcp.haproxy.down_cpu0_busy_pct": "97",
		"tcp.haproxy.down_cpu1_busy_pct": "95",
	}
	want := "WARNING: relaying down through pbxgate the ends' core (CPU 0) was 99 % busy and the proxy's core 41 %"
	checkWarning(t, r, relayWarning, want, "")
}

// TestCoreSecsPerGB: 50 % of the proxy's core at 2,000 MB/s is 0.25 s of
// that core per GB; a missing load or rate gives no number.
func TestCoreSecsPerGB(t *testing.T) {
	r := results{"tcp.pbxgate.down_mbps": "2000", "tcp.pbxgate.down_cpu1_busy_pct": "50", "tcp.pbxgate.up_mbps": "1000"}
	if v, ok := r.coreSecsPerGB("pbxgate", "down"); !ok || math.Abs(v-0.25) > 1e-9 {
		t.Errorf("down = %v, %v; want 0.25, true", v, ok)
	}
	if _, ok := r.coreSecsPerGB("pbxgate", "up"); ok {
		t.Error("up without a CPU load gave a number")
	}
}

func TestReadResultsRejectsGarbage(t *testing.T) {
	raw := filepath.Join(t.TempDir(), "raw.txt")
	if err := os.WriteFile(raw, []byte("# comment\n\na.b=1\nnot a pair\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readResults(raw); err == nil || !strings.Contains(err.Error(), ":4:") {
		t.Fatalf("want an error naming line 4, got %v", err)
	}
}

func ptr(b bool) *bool { return &b }
