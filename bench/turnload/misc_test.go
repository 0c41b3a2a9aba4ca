package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name, in string
		want     time.Duration
		err      bool
	}{
		{"plain", "1234 (turnserver) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 5 0 1000 0 0", 2 * time.Second, false},
		{"name with spaces and parens", "99 (a) b) (c) R 1 2 3 4 5 6 7 8 9 10 7 3 0 0", 100 * time.Millisecond, false},
		{"no name", "99 a R 1 2 3", 0, true},
		{"short", "99 (x) R 1 2 3", 0, true},
		{"not a number", "99 (x) R 1 2 3 4 5 6 7 8 9 10 a 3 0 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.in))
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("got %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := cpuTime(0); err != nil {
		t.Errorf("own CPU time: %v", err)
	}
}

func TestParseProcStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	got, err := parseProcStat([]byte("cpu  100 1 50 9000 30 2 7 0 40 0\ncpu0 60 0 20 4000 10 1 3 0 40 0\ncpu1 40 1 30 5000 20 1 4 0 0 0\nintr 5 6\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := 160 * clockTick; got.all != want {
		t.Errorf("all CPUs busy %v, want %v (guest time is already in user)", got.all, want)
	}
	if d, ok := got.on([]int{1}); !ok || d != 76*clockTick {
		t.Errorf("cpu1 busy %v %v, want %v", d, ok, 76*clockTick)
	}
	if _, ok := got.on([]int{2}); ok {
		t.Error("an unknown CPU has a busy time")
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("a file without the cpu line parsed")
	}
}

func TestParseUDPDrops(t *testing.T) {
	const in = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0100007F:9BBF 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 123 2 0000000000000000 631
  101: 0100007F:9BBF 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 124 2 0000000000000000 9
  102: 0200007F:8000 0100007F:9BBF 01 00000000:00000000 00:00000000 00000000     0        0 125 2 0000000000000000 0
`
	got, err := parseUDPDrops([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if d := got[netip.MustParseAddrPort("127.0.0.1:39871")]; d != 640 {
		t.Errorf("127.0.0.1:39871: %d drops, want 640 (two SO_REUSEPORT sockets)", d)
	}
	if _, ok := got[netip.MustParseAddrPort("127.0.0.2:32768")]; !ok || len(got) != 2 {
		t.Errorf("got %v", got)
	}
	if _, err := parseUDPDrops([]byte("header\n 1: zz:1 x\n")); err == nil {
		t.Error("a malformed line parsed")
	}
	if _, err := udpDrops(); err != nil {
		t.Errorf("this machine's /proc/net/udp: %v", err)
	}
}

func TestParseStatus(t *testing.T) {
	m, err := parseStatus(strings.NewReader("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"), "status")
	if err != nil || m.rssKB != 1024 || m.hwmKB != 2048 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := parseStatus(strings.NewReader("Name:\tx\n"), "status"); err == nil {
		t.Error("status without VmRSS parsed")
	}
	if _, err := readMem(os.Getpid()); err != nil {
		t.Errorf("own memory: %v", err)
	}
}

func TestHist(t *testing.T) {
	var h hist
	if h.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.04 {
			t.Errorf("quantile %v = %v, want %v within 4 %%", c.q, got, c.want)
		}
	}
	var o hist
	o.record(time.Second)
	h.merge(&o)
	if h.quantile(1) != time.Second || h.n != 1001 {
		t.Errorf("after merge: max %v, n %d", h.quantile(1), h.n)
	}
}

// expected must agree with counting packet by packet.
func TestExpected(t *testing.T) {
	for _, n := range []int64{1, 3, 7} {
		for _, lo := range []int64{0, 1, 5, 6} {
			for _, hi := range []int64{lo, lo + 1, lo + 10, lo + 22} {
				for i := int64(0); i < n; i++ {
					var want int64
					for j := lo; j < hi; j++ {
						if j%n == i {
							want++
						}
					}
					if got := expected(i, n, lo, hi); got != want {
						t.Fatalf("expected(%d, %d, %d, %d) = %d, want %d", i, n, lo, hi, got, want)
					}
				}
			}
		}
	}
}

func TestMedian(t *testing.T) {
	if _, ok := median(nil); ok {
		t.Error("median of nothing")
	}
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got, _ := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// The report judges pbxgate against coturn with the medians of the rounds
// and the streams search's results, and exits non-zero on a miss.
func TestReport(t *testing.T) {
	raw := `meta.date=2026-01-01T00:00:00Z
meta.rounds=3
meta.duration=5
meta.idle_before_pct=100
meta.mem_levels=1000,5000
binding.args=-sockets 16 -window 32
binding.coturn.r1.mode=binding
binding.coturn.r1.rate=200000
binding.coturn.r1.secs=5
binding.coturn.r1.server_cpu=5
binding.coturn.r1.gen_cpu=4
binding.coturn.r1.other_cpu=0
binding.coturn.r1.server_cpu_us=5
binding.coturn.r2.error=boom
binding.coturn.r3.mode=binding
binding.coturn.r3.rate=100000
binding.coturn.r3.secs=5
binding.pbxgate.r1.mode=binding
binding.pbxgate.r1.rate=150000
binding.pbxgate.r1.secs=5
binding.pbxgate.r2.mode=binding
binding.pbxgate.r2.rate=160000
binding.pbxgate.r2.secs=5
binding.pbxgate.r2.other_cpu=2
binding.pbxgate.r3.mode=binding
binding.pbxgate.r3.rate=10
binding.pbxgate.r3.secs=5
alloc.coturn.r1.mode=alloc
alloc.coturn.r1.rate=5000
alloc.pbxgate.r1.mode=alloc
alloc.pbxgate.r1.rate=9000
streams.coturn.n=750
streams.coturn.fail_n=1000
streams.pbxgate.n=750
streams.pbxgate.best.loss_pct=0.05
mem.coturn.rss_idle_kb=14000
mem.coturn.rss_1000_kb=37000
mem.coturn.kb_per_1000_at_1000=23000
`
	dir := t.TempDir()
	rawPath := filepath.Join(dir, "raw.txt")
	if err := os.WriteFile(rawPath, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	pass, err := report(&out, rawPath, filepath.Join(dir, "t.txt"), filepath.Join(dir, "t.json"))
	if err != nil {
		t.Fatal(err)
	}
	if pass {
		t.Error("passed without relay results")
	}
	txt := out.String()
	for _, want := range []string{
		"pbxgate/coturn requests/s 1.00 [PASS]", // medians 150,000 vs 150,000 (one coturn round failed)
		"(1 failed)",                            // the failed round is shown
		"pbxgate/coturn allocations/s 1.80 [PASS]",
		"pbxgate/coturn packets/s n/a [n/a]", // relay not run
		"pbxgate/coturn streams 1.00 [PASS]",
		"WARNING: in 1 pbxgate run(s) other processes used", // 2 s of 5
		"22.46", // MiB per 1,000 allocations at 1,000
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("report lacks %q:\n%s", want, txt)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "t.json"))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Pass     bool `json:"pass"`
		Verdicts map[string]struct {
			Pass *bool `json:"pass"`
		} `json:"verdicts"`
		Results map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if j.Pass || j.Verdicts["relay"].Pass != nil || j.Verdicts["alloc"].Pass == nil || !*j.Verdicts["alloc"].Pass {
		t.Errorf("JSON verdicts: %s", b)
	}
	if _, ok := j.Results["binding"]; !ok {
		t.Errorf("JSON lacks the raw results: %s", b)
	}
}

func TestWindow(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := newWindow(4, 100*time.Millisecond)
	if w.room() != 4 {
		t.Fatalf("room %d, want 4", w.room())
	}
	for i := 0; i < 4; i++ {
		if seq, lost := w.sent(t0); seq != uint64(i) || lost != 0 {
			t.Fatalf("sent: %d %d", seq, lost)
		}
	}
	// 1 and 3 answered out of order, 1 again (a duplicate), 9 never sent.
	if !w.answered(1) || !w.answered(3) || w.answered(1) || w.answered(9) {
		t.Fatal("answered: wrong acceptance")
	}
	if w.room() != 2 {
		t.Fatalf("room %d after two answers, want 2", w.room())
	}
	// Others keep answering; 0 and 2 stay lost only once they are old.
	if lost := w.expire(t0.Add(50 * time.Millisecond)); lost != 0 {
		t.Fatalf("expired %d before the stall time", lost)
	}
	w.sent(t0.Add(60 * time.Millisecond)) // 4
	if lost := w.expire(t0.Add(120 * time.Millisecond)); lost != 2 || w.room() != 3 {
		t.Fatalf("expired %d (room %d), want 0 and 2 lost and room 3", lost, w.room())
	}
	if w.answered(0) {
		t.Error("a late answer to a lost request counted")
	}
	if !w.answered(4) || w.pending != 0 || w.low != w.next {
		t.Errorf("after the last answer: pending %d, low %d, next %d", w.pending, w.low, w.next)
	}
	// A stuck oldest request is given up when the ring is full.
	w = newWindow(1, time.Hour)
	w.sent(t0)
	lost := 0
	for i := 1; i <= ringSize; i++ {
		seq, l := w.sent(t0)
		lost += l
		w.answered(seq)
	}
	if lost != 1 || w.pending != 0 {
		t.Errorf("ring overflow: lost %d, pending %d; want the stuck one lost", lost, w.pending)
	}
}
