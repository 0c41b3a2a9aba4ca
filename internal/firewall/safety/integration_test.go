package safety

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Roles of the re-executed test binary (env roleEnv):
//   - roleApplier: ApplyTest the script in $PBXFW_SCRIPT with a real
//     watchdog, print the generation, then block until killed;
//   - roleWatchdog: what the CLI's "rollback --if-gen N --wait-until T"
//     runs: RollbackAt.
const (
	roleEnv      = "PBXFW_SAFETY_ROLE"
	roleApplier  = "applier"
	roleWatchdog = "watchdog"
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case roleApplier:
		os.Exit(runApplier())
	case roleWatchdog:
		os.Exit(runWatchdog(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// helperManager builds the Manager a re-executed role uses, from the
// environment the test set.
func helperManager(timer Timer) (*Manager, error) {
	return New(Options{Dir: os.Getenv("PBXFW_DIR"), Loader: nsLoader{ns: os.Getenv("PBXFW_NS")}, Timer: timer})
}

func runApplier() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	env := append(os.Environ(), roleEnv+"="+roleWatchdog) // the last value wins
	m, err := helperManager(&WatchdogTimer{Self: []string{self}, Env: env})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	script, err := os.ReadFile(os.Getenv("PBXFW_SCRIPT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	d, err := time.ParseDuration(os.Getenv("PBXFW_DURATION"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	gen, err := m.ApplyTest(string(script), d, netip.Addr{}, nil, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("applied %d\n", gen)
	// Stand for a CLI stuck at its prompt until the test kills it; the
	// bound only keeps a forgotten process from living forever.
	time.Sleep(time.Minute)
	return 0
}

func runWatchdog(args []string) int {
	fs := flag.NewFlagSet("watchdog", flag.ContinueOnError)
	ifGen := fs.Uint64(strings.TrimPrefix(FlagIfGen, "--"), 0, "")
	until := fs.String(strings.TrimPrefix(FlagWaitUntil, "--"), "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	deadline, err := time.Parse(time.RFC3339Nano, *until)
	if err != nil {
		return 2
	}
	m, err := helperManager(&WatchdogTimer{})
	if err != nil {
		return 2
	}
	if err := m.RollbackAt(context.Background(), *ifGen, deadline); err != nil {
		return 1
	}
	return 0
}

// nsLoader runs nft inside a network namespace.
type nsLoader struct{ ns string }

func (l nsLoader) nft(script string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.ns, "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (l nsLoader) Check(script string) error { return l.nft(script, "-c", "-f", "-") }
func (l nsLoader) Apply(script string) error { return l.nft(script, "-f", "-") }

// needPeers fails the test when root or the binaries are missing.
func needPeers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces and nftables); CI runs these tests as root")
	}
	for bin, pkg := range map[string]string{"nft": "nftables", "ip": "iproute2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("needs %s (apt-get install -y %s)", bin, pkg)
		}
	}
}

var nsSeq atomic.Int64

// newNetns creates a uniquely named network namespace, removed in
// Cleanup.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("pbxfw-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// policy is a script for our table whose chain carries marker as a
// comment; policy accept, so the namespace stays usable.
func policy(marker string) string {
	return "table inet pbxgate {}\nflush table inet pbxgate\ntable inet pbxgate {\n" +
		"\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n" +
		"\t\ttcp dport 9 drop comment \"" + marker + "\"\n\t}\n}\n"
}

// ruleset returns the namespace's whole ruleset.
func ruleset(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// waitFor polls cond every 100ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// startApplier runs ApplyTest in a child process and returns it with the
// generation it applied.
func startApplier(t *testing.T, dir, ns, script string, d time.Duration) (*exec.Cmd, uint64) {
	t.Helper()
	sf := filepath.Join(t.TempDir(), "script.nft")
	if err := os.WriteFile(sf, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), roleEnv+"="+roleApplier, "PBXFW_DIR="+dir, "PBXFW_NS="+ns,
		"PBXFW_SCRIPT="+sf, "PBXFW_DURATION="+d.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(io.LimitReader(stdout, 1024)).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		gen, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(s, "applied ")), 10, 64)
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("applier said %q: %s", s, stderr.String())
		}
		return cmd, gen
	case <-time.After(20 * time.Second):
		t.Fatalf("applier did not report: %s", stderr.String())
	}
	return nil, 0
}

// killWatchdog stops a watchdog a failed test left behind.
func killWatchdog(t *testing.T, m *Manager) {
	t.Helper()
	st, err := m.Status()
	if err != nil || st.Pending == nil || st.Pending.Timer.PID <= 0 {
		return
	}
	h := st.Pending.Timer
	t.Cleanup(func() { _ = (&WatchdogTimer{}).Cancel(h) })
}

// The safety net end to end: a real watchdog process reverts the
// namespace's ruleset to last-good after the process that applied the
// candidate was SIGKILLed; Confirm from another process prevents it; the
// blacklist table is never touched.
func TestIntegrationWatchdogSurvivesKill(t *testing.T) {
	needPeers(t)
	ns := newNetns(t)
	dir := t.TempDir()
	lo := nsLoader{ns: ns}
	m, err := New(Options{Dir: dir, Loader: lo, Timer: &WatchdogTimer{}})
	if err != nil {
		t.Fatal(err)
	}
	// Another table of ours that rollbacks must leave alone.
	bl := "table inet pbxgate_bl {\n\tset bl4 { type ipv4_addr; flags interval,timeout; elements = { 192.0.2.0/24 timeout 1h } }\n}\n"
	if err := lo.Apply(bl); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ApplyNow(policy("gen-A"), netip.Addr{}, nil, false); err != nil {
		t.Fatal(err)
	}
	if rs := ruleset(t, ns); !strings.Contains(rs, "gen-A") {
		t.Fatalf("last-good not loaded:\n%s", rs)
	}

	t.Run("revert after SIGKILL", func(t *testing.T) {
		cmd, gen := startApplier(t, dir, ns, policy("gen-B"), 2*time.Second)
		killWatchdog(t, m)
		if rs := ruleset(t, ns); !strings.Contains(rs, "gen-B") {
			t.Fatalf("candidate not loaded:\n%s", rs)
		}
		st, err := m.Status()
		if err != nil || st.Pending == nil || st.Pending.Timer.Kind != TimerWatchdog || st.Pending.Timer.PID <= 0 {
			t.Fatalf("status %+v, %v", st, err)
		}
		deadline := st.Pending.Deadline
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if !waitFor(10*time.Second, func() bool { return strings.Contains(ruleset(t, ns), "gen-A") }) {
			t.Fatalf("no revert to last-good within 10 s:\n%s", ruleset(t, ns))
		}
		if time.Now().Before(deadline) {
			t.Fatalf("reverted before the deadline %v", deadline)
		}
		rs := ruleset(t, ns)
		if strings.Contains(rs, "gen-B") || !strings.Contains(rs, "192.0.2.0/24") {
			t.Fatalf("after revert:\n%s", rs)
		}
		st, err = m.Status()
		if err != nil || st.Pending != nil || st.Last.Generation != gen || st.Last.Result != ResultRolledBack || st.Last.Reason != "deadline" {
			t.Fatalf("status %+v, %v", st, err)
		}
	})

	t.Run("confirm prevents the revert", func(t *testing.T) {
		cmd, gen := startApplier(t, dir, ns, policy("gen-C"), 2*time.Second)
		killWatchdog(t, m)
		st, err := m.Status()
		if err != nil || st.Pending == nil || st.Pending.Generation != gen {
			t.Fatalf("status %+v, %v", st, err)
		}
		wd := st.Pending.Timer
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if err := m.Confirm(); err != nil {
			t.Fatal(err)
		}
		// Confirm stops the watchdog; wait past the deadline regardless.
		if !waitFor(10*time.Second, func() bool { _, _, err := procStart(wd.PID); return err != nil }) {
			t.Fatal("watchdog still running after Confirm")
		}
		if d := time.Until(st.Pending.Deadline); d > 0 {
			time.Sleep(d + 500*time.Millisecond)
		}
		if rs := ruleset(t, ns); !strings.Contains(rs, "gen-C") || !strings.Contains(rs, "192.0.2.0/24") {
			t.Fatalf("confirmed ruleset reverted:\n%s", rs)
		}
		if st, err := m.Status(); err != nil || st.Confirmed != gen || st.Pending != nil {
			t.Fatalf("status %+v, %v", st, err)
		}
	})

	t.Run("boot loads last-good", func(t *testing.T) {
		if err := lo.Apply(DefaultRemoveScript); err != nil { // a reboot: our table gone
			t.Fatal(err)
		}
		if err := m.Boot(); err != nil {
			t.Fatal(err)
		}
		if rs := ruleset(t, ns); !strings.Contains(rs, "gen-C") {
			t.Fatalf("Boot did not load last-good:\n%s", rs)
		}
	})
}

// With no last-good, a rollback removes our table and nothing else.
func TestIntegrationRollbackWithoutLastGood(t *testing.T) {
	needPeers(t)
	ns := newNetns(t)
	lo := nsLoader{ns: ns}
	if err := lo.Apply("table inet other {\n\tchain c { type filter hook input priority 0; policy accept; }\n}\n"); err != nil {
		t.Fatal(err)
	}
	m, err := New(Options{Dir: t.TempDir(), Loader: lo, Timer: &fakeTimer{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.ApplyTest(policy("gen-X"), time.Minute, netip.Addr{}, nil, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ApplyTest(policy("gen-Y")+"table inet pbxgate { chain broken { tcp dport 99999 drop }\n", time.Minute, netip.Addr{}, nil, false); err == nil {
		t.Fatal("nft accepted a broken script")
	}
	if rs := ruleset(t, ns); !strings.Contains(rs, "gen-X") {
		t.Fatalf("a rejected script changed the ruleset:\n%s", rs)
	}
	if err := m.Rollback(0); err != nil {
		t.Fatal(err)
	}
	rs := ruleset(t, ns)
	if strings.Contains(rs, "table inet pbxgate") || !strings.Contains(rs, "table inet other") {
		t.Fatalf("after rollback without last-good:\n%s", rs)
	}
	// Idempotent: removing an absent table succeeds.
	if err := m.Rollback(0); err != nil {
		t.Fatal(err)
	}
}
