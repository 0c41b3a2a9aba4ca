package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Helpers for the SIP tests: sipp (Debian sip-tester) as phones and as the
// PBX stand-in, socat as the TLS client in front of it, and the gateway's
// SIP metrics. Scenario files are in testdata/sipp; the [keywords] they use
// are filled in with sipp's -key.

// sippScenarios is the directory of the scenario files.
const sippScenarios = "testdata/sipp"

// sippDefaultTimeout is sipp's own -timeout for a run that sets none.
const sippDefaultTimeout = 30 * time.Second

// sippArgs describes one sipp run.
type sippArgs struct {
	scenario string            // a file in testdata/sipp ("register.xml") or a built-in scenario ("uac", "uas")
	remote   string            // host:port requests are sent to; "" for a server
	ip       string            // -i: the local address, the source the gateway sees
	port     string            // -p: the local port; "" picks a free one
	tcp      bool              // -t t1 (one TCP connection) instead of -t u1
	keys     map[string]string // -key: the scenario's [keywords]
	calls    int               // -m: exit after this many calls; required
	rate     int               // -r: calls per second; 0 is sipp's 10
	limit    int               // -l: simultaneous calls; 0 is sipp's default
	hold     time.Duration     // -d: the length of a scenario's <pause/>
	// noAnswer is how long a call waits for an expected message before it
	// fails (-recv_timeout). Setting it also turns retransmissions off
	// (-nr): a test expecting silence wants each request sent once.
	noAnswer time.Duration
	timeout  time.Duration // sipp's -timeout for the whole run; 0 is sippDefaultTimeout
}

// sippResult is what one finished sipp run left behind.
type sippResult struct {
	args    sippArgs
	code    int            // exit code: 0 all calls successful, 1 some failed, 255 fatal or a client's -timeout
	stats   map[string]int // the final row of -trace_stat, integer columns only
	trace   string         // -trace_msg: every message sent and received
	summary string         // the final screen and the unexpected messages, for failure messages
}

// sippProc is a sipp started in the background.
type sippProc struct {
	t    testing.TB
	args sippArgs
	dir  string     // its files: stat.csv, messages.log, screen.log, errors.log
	out  *logBuffer // its standard output and error
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// startSipp starts sipp with a and returns at once. The process is killed
// at cleanup if it is still running.
func startSipp(t testing.TB, a sippArgs) *sippProc {
	t.Helper()
	bin := needBinary(t, "sipp", "sip-tester")
	if a.calls <= 0 {
		t.Fatal("startSipp: every sipp run needs a call limit (-m)")
	}
	if a.timeout <= 0 {
		a.timeout = sippDefaultTimeout
	}
	dir := t.TempDir()
	var args []string
	if a.remote != "" {
		args = append(args, a.remote)
	}
	if strings.HasSuffix(a.scenario, ".xml") {
		abs, err := filepath.Abs(filepath.Join(sippScenarios, a.scenario))
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, "-sf", abs)
	} else {
		args = append(args, "-sn", a.scenario)
	}
	transport := "u1"
	if a.tcp {
		transport = "t1"
	}
	args = append(args, "-t", transport, "-i", a.ip,
		"-m", strconv.Itoa(a.calls),
		"-nostdin",
		// The run ends after -timeout whatever happens, and a client that
		// gets there has failed. A server runs until its -m calls are
		// done or its cleanup, so reaching the timeout is not an error.
		"-timeout", fmt.Sprintf("%dms", a.timeout.Milliseconds()),
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv"),
		"-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_screen", "-screen_file", filepath.Join(dir, "screen.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
	)
	if a.remote != "" {
		args = append(args, "-timeout_error")
	}
	// Every client run gets a port of its own: sipp would take 5060 again
	// and again, and over UDP the gateway would see each run as the same
	// client, keeping the flow (and the backend) of the previous one.
	port := a.port
	if port == "" {
		port = portOf(freeAddr(t))
	}
	args = append(args, "-p", port)
	if a.rate > 0 {
		args = append(args, "-r", strconv.Itoa(a.rate))
	}
	if a.limit > 0 {
		args = append(args, "-l", strconv.Itoa(a.limit))
	}
	if a.hold > 0 {
		args = append(args, "-d", strconv.FormatInt(a.hold.Milliseconds(), 10))
	}
	if a.noAnswer > 0 {
		args = append(args, "-nr", "-recv_timeout", strconv.FormatInt(a.noAnswer.Milliseconds(), 10))
	}
	for k, v := range a.keys {
		args = append(args, "-key", k, v)
	}
	p := &sippProc{t: t, args: a, dir: dir, out: newLogBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting sipp: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// runSipp runs sipp with a to its end and returns the result.
func runSipp(t testing.TB, a sippArgs) sippResult {
	t.Helper()
	return startSipp(t, a).wait()
}

// wait waits for sipp to exit (it is killed a while after its own
// -timeout) and collects its files. A run that could not start its
// scenario (bad scenario, port in use) fails the test.
func (p *sippProc) wait() sippResult {
	p.t.Helper()
	timeout := p.args.timeout
	if timeout <= 0 {
		timeout = sippDefaultTimeout
	}
	select {
	case <-p.done:
	case <-time.After(timeout + 15*time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("sipp %s still running %v after its -timeout %v; killed:\n%s",
			p.args.scenario, 15*time.Second, timeout, p.out.String())
	}
	r := sippResult{args: p.args, code: p.cmd.ProcessState.ExitCode(), trace: p.trace()}
	csv, _ := os.ReadFile(filepath.Join(p.dir, "stat.csv"))
	r.stats = parseSippStats(string(csv))
	screen, _ := os.ReadFile(filepath.Join(p.dir, "screen.log"))
	errs, _ := os.ReadFile(filepath.Join(p.dir, "errors.log"))
	r.summary = fmt.Sprintf("--- screen:\n%s\n--- unexpected messages and errors:\n%s",
		lastScreen(string(screen)), clipTail(string(errs), 3000))
	// A sipp that could not run at all (a bad scenario, a socket it cannot
	// bind) leaves no statistics. Exit codes do not tell: 255 is also a
	// client reaching its -timeout.
	if r.stats == nil {
		p.t.Fatalf("sipp %s could not run (exit %d):\n%s\n%s", p.args.scenario, r.code,
			clipTail(p.out.String(), 3000), r.summary)
	}
	return r
}

// waitBound waits until a server sipp (one started with ip and port) has
// bound its socket, read from /proc/net so that no probe reaches it. The
// test fails when it does not in time or sipp exits first.
func (p *sippProc) waitBound() {
	p.t.Helper()
	network := "udp"
	if p.args.tcp {
		network = "tcp"
	}
	want, err := netip.ParseAddrPort(net.JoinHostPort(p.args.ip, p.args.port))
	if err != nil {
		p.t.Fatalf("waitBound: sipp has no local address and port: %v", err)
	}
	deadline := time.Now().Add(startTimeout)
	for !socketBound(network, want) {
		if time.Now().After(deadline) {
			p.t.Fatalf("sipp %s not bound to %s/%s within %v:\n%s", p.args.scenario, network, want, startTimeout, p.out.String())
		}
		select {
		case <-p.done:
			p.t.Fatalf("sipp %s exited with code %d before binding %s/%s:\n%s", p.args.scenario,
				p.cmd.ProcessState.ExitCode(), network, want, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// socketBound reports whether an IPv4 socket of network ("tcp": listening,
// "udp": bound) has the local address want, from /proc/net/tcp or udp.
func socketBound(network string, want netip.AddrPort) bool {
	b, err := os.ReadFile("/proc/net/" + network)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || network == "tcp" && f[3] != "0A" { // 0A: LISTEN
			continue
		}
		hexIP, hexPort, ok := strings.Cut(f[1], ":")
		if !ok || len(hexIP) != 8 {
			continue
		}
		ip, err1 := strconv.ParseUint(hexIP, 16, 32)
		port, err2 := strconv.ParseUint(hexPort, 16, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		// The address is in host byte order: little-endian on the
		// machines this runs on.
		a := netip.AddrFrom4([4]byte{byte(ip), byte(ip >> 8), byte(ip >> 16), byte(ip >> 24)})
		if a == want.Addr() && uint16(port) == want.Port() {
			return true
		}
	}
	return false
}

// trace returns the messages sipp has sent and received so far. sipp
// writes the file as it goes.
func (p *sippProc) trace() string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "messages.log"))
	return string(b)
}

// waitReceived waits until sipp has received n messages whose first line
// starts with start ("INVITE ", "SIP/2.0 403"); the test fails otherwise.
func (p *sippProc) waitReceived(start string, n int) {
	p.t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		got := countMessages(p.trace(), false, start)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("sipp %s received %d %q messages, want %d:\n%s", p.args.scenario, got, start, n,
				clipTail(p.trace(), 3000))
		}
		select {
		case <-p.done:
			if got = countMessages(p.trace(), false, start); got < n {
				p.t.Fatalf("sipp %s exited (code %d) after %d %q messages, want %d:\n%s",
					p.args.scenario, p.cmd.ProcessState.ExitCode(), got, start, n, p.out.String())
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// received counts the messages sipp received whose first line starts with
// start.
func (p *sippProc) received(start string) int { return countMessages(p.trace(), false, start) }

// successful and failed are sipp's cumulative call counts.
func (r sippResult) successful() int { return r.stats["SuccessfulCall(C)"] }
func (r sippResult) failed() int     { return r.stats["FailedCall(C)"] }

// stat returns one cumulative counter of the stat file, e.g.
// "FailedTimeoutOnRecv".
func (r sippResult) stat(name string) int { return r.stats[name+"(C)"] }

// received counts the messages received whose first line starts with
// start.
func (r sippResult) received(start string) int { return countMessages(r.trace, false, start) }

// String describes the run for failure messages.
func (r sippResult) String() string {
	return fmt.Sprintf("sipp %s from %s (exit %d): %d successful, %d failed calls\n%s",
		r.args.scenario, r.args.ip, r.code, r.successful(), r.failed(), r.summary)
}

// expectCalls fails the test unless the run had exactly ok successful and
// failed failed calls.
func expectCalls(t testing.TB, r sippResult, ok, failed int) {
	t.Helper()
	if r.successful() != ok || r.failed() != failed {
		t.Errorf("%s\nwant %d successful and %d failed calls", r, ok, failed)
	}
}

// parseSippStats returns the integer columns of the last row of a
// -trace_stat file (semicolon-separated, a header row first), or nil when
// there is no data row.
func parseSippStats(csv string) map[string]int {
	var rows []string
	for _, l := range strings.Split(csv, "\n") {
		if strings.TrimSpace(l) != "" {
			rows = append(rows, l)
		}
	}
	if len(rows) < 2 {
		return nil
	}
	head := strings.Split(rows[0], ";")
	last := strings.Split(rows[len(rows)-1], ";")
	m := make(map[string]int, len(head))
	for i, h := range head {
		if i >= len(last) || h == "" {
			continue
		}
		if n, err := strconv.Atoi(last[i]); err == nil {
			m[h] = n
		}
	}
	return m
}

// countMessages counts the messages of a sipp -trace_msg log that were sent
// (or received) and whose first line starts with start. Each message
// follows a line like "UDP message received [273] bytes :" or "TCP message
// sent (284 bytes):" and an empty line.
func countMessages(trace string, sent bool, start string) int {
	marker := " message received "
	if sent {
		marker = " message sent "
	}
	n := 0
	lines := strings.Split(trace, "\n")
	for i, l := range lines {
		if !strings.Contains(l, marker) {
			continue
		}
		for _, next := range lines[i+1 : min(i+4, len(lines))] {
			if next = strings.TrimSpace(next); next != "" {
				if strings.HasPrefix(next, start) {
					n++
				}
				break
			}
		}
	}
	return n
}

// lastScreen returns the last statistics and scenario screens of a
// -trace_screen file.
func lastScreen(s string) string {
	if i := strings.LastIndex(s, "Scenario Screen"); i >= 0 {
		if j := strings.LastIndex(s[:i], "\n"); j >= 0 {
			s = s[j+1:]
		}
	}
	return clipTail(s, 4000)
}

// clipTail returns the last n bytes of s.
func clipTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// tlsBridge starts socat listening on a free loopback port and relaying each
// connection over TLS to addr, without verifying the certificate (the
// gateway's is self-signed), and returns where it listens. Debian's sipp
// is built without TLS: sipp speaks SIP over TCP to socat, and socat is the
// real TLS client of the gateway. It is stopped at cleanup.
func tlsBridge(t testing.TB, addr string) string {
	t.Helper()
	bin := needBinary(t, "socat", "socat")
	listen := freeAddr(t)
	cmd := exec.Command(bin, "-d", "-d",
		"TCP-LISTEN:"+portOf(listen)+",bind=127.0.0.1,reuseaddr,fork",
		"OPENSSL:"+addr+",verify=0")
	cmd.Env = cleanEnv()
	out := newLogBuffer()
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: the children it forks per connection are
	// stopped with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting socat: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("socat %s -> %s:\n%s", listen, addr, clipTail(out.String(), 3000))
		}
	})
	if s, ok := out.waitFor(startTimeout, done, func(s string) bool {
		return strings.Contains(s, "listening on")
	}); !ok {
		t.Fatalf("socat not listening on %s:\n%s", listen, s)
	}
	return listen
}

// metricLine returns the line of the gateway's /metrics (on the admin API
// at admin) for name with exactly the labels given ("" when absent), e.g.
// metricLine(t, admin, `pbxgate_sip_calls_external{brand="b1",company="c1"}`).
func metricLine(t testing.TB, admin, series string) string {
	t.Helper()
	r := curl(t, "http://"+admin+"/metrics")
	if r.Status != 200 {
		t.Fatalf("GET /metrics: status %d %s", r.Status, r.Stderr)
	}
	for _, l := range strings.Split(r.Body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			return l
		}
	}
	return ""
}

// waitMetric waits until the series has the value want ("2"); a series
// that is absent counts as "0". The test fails when it does not in time.
func waitMetric(t testing.TB, admin, series, want string) {
	t.Helper()
	deadline := time.Now().Add(logTimeout)
	for {
		got := "0"
		if l := metricLine(t, admin, series); l != "" {
			got = strings.TrimPrefix(l, series+" ")
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %s is %s, want %s", series, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startSippServer starts a sipp server (a PBX stand-in: a.remote is
// empty, a.ip and a.port set) and waits until its socket is bound.
func startSippServer(t testing.TB, a sippArgs) *sippProc {
	t.Helper()
	if a.remote != "" || a.ip == "" || a.port == "" {
		t.Fatal("startSippServer: a server has a local address and port and no remote")
	}
	p := startSipp(t, a)
	p.waitBound()
	return p
}
