package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v4"

	// The suite runs a binary it builds itself, which `go test` cannot see.
	// Importing the CLI makes this test binary depend on every package
	// pbxgate is built from, so a change to any of them re-runs the suite
	// instead of replaying a cached result.
	_ "github.com/pbxgate/pbxgate/internal/cli"
)

// Time limits. Generous: the machine may be busy with other test binaries.
const (
	startTimeout = 15 * time.Second // process up and listening
	stopTimeout  = 15 * time.Second // SIGTERM to exit
	logTimeout   = 10 * time.Second // an expected log line or event appears
	cmdTimeout   = 20 * time.Second // one curl / ldapsearch run
)

// pbxgateBin is the binary TestMain builds.
var pbxgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pbxgate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	pbxgateBin = filepath.Join(dir, "pbxgate")
	build := exec.Command("go", "build", "-o", pbxgateBin, "github.com/pbxgate/pbxgate/cmd/pbxgate")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building pbxgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needBinary returns the path of an external program the test needs, or
// fails the test naming the Debian package that provides it.
func needBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("needs %s (apt-get install -y %s)", name, pkg)
	return ""
}

// cleanEnv is the environment for client programs: the test's own, minus
// proxy settings that would send loopback traffic elsewhere.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToLower(k), "_proxy") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago. Another process may take it before pbxgate binds it; that race is
// accepted.
func freeAddr(t testing.TB) string {
	t.Helper()
	// A port from the kernel's ephemeral range (what ":0" gives) can be
	// taken by any outgoing connection of a parallel test — curl's source
	// port, a backend dial — between picking it and pbxgate binding it.
	// Ports below that range are never handed out implicitly, so pick there,
	// and never the same one twice in this process.
	lo, hi := 10000, ephemeralLow()-1
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 200 {
		if hi-lo < 1000 {
			break
		}
		port := lo + rand.IntN(hi-lo)
		if freeUsed[port] {
			continue
		}
		hp := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ln, err := net.Listen("tcp", hp)
		if err != nil {
			continue
		}
		ln.Close()
		// SIP and TURN listeners take the port over UDP too.
		pc, err := net.ListenPacket("udp", hp)
		if err != nil {
			continue
		}
		pc.Close()
		freeUsed[port] = true
		return ln.Addr().String()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var (
	freeMu   sync.Mutex
	freeUsed = map[int]bool{}
)

// ephemeralLow is the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return n
}

// portOf returns the port of a host:port address.
func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// render executes a text/template configuration with v. Every template gets
// .DataDir, a fresh temporary directory, unless v sets it. A pbxgate
// configuration (one starting with data_dir) without admin or fraud
// sections gets an admin API on a free port and loopback whitelisted.
func render(t testing.TB, tmpl string, v map[string]any) string {
	t.Helper()
	data := map[string]any{"DataDir": t.TempDir()}
	for k, x := range v {
		data[k] = x
	}
	tp, err := template.New("config").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		t.Fatalf("config template: %v", err)
	}
	var b bytes.Buffer
	if err := tp.Execute(&b, data); err != nil {
		t.Fatalf("config template: %v", err)
	}
	// Tests run side by side: each gateway's admin API gets its own port.
	// Tests that are not about fraud detection whitelist loopback, so the
	// refusals they provoke on purpose do not ban the test client.
	if !strings.HasPrefix(tmpl, "data_dir:") { // not a pbxgate configuration
		return b.String()
	}
	if !strings.Contains(b.String(), "\nadmin:") {
		fmt.Fprintf(&b, "\nadmin:\n  address: %s\n", freeAddr(t))
	}
	if !strings.Contains(b.String(), "\nfraud:") {
		b.WriteString("\nfraud:\n  whitelist: [127.0.0.0/8, \"::1\"]\n")
	}
	return b.String()
}

// writeFile writes content to name inside dir and returns the path.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// logBuffer collects a process's output and wakes waiters on every write.
type logBuffer struct {
	mu      sync.Mutex // guards the fields below
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *logBuffer) String() string {
	s, _ := l.snapshot()
	return s
}

func (l *logBuffer) snapshot() (string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String(), l.changed
}

// waitFor blocks until ok holds for the buffer's content or timeout passes
// (or stop is closed). It returns the content last seen and whether ok held.
func (l *logBuffer) waitFor(timeout time.Duration, stop <-chan struct{}, ok func(string) bool) (string, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s, changed := l.snapshot()
		if ok(s) {
			return s, true
		}
		select {
		case <-changed:
		case <-stop:
			// The process exited: its output is complete.
			s = l.String()
			return s, ok(s)
		case <-deadline.C:
			return s, false
		}
	}
}

// logLine is one parsed line of slog's text format: key=value pairs.
type logLine map[string]string

// parseLogLine splits a slog text line into its attributes. Quoted values
// are unquoted. It never fails; a malformed tail is ignored.
func parseLogLine(line string) logLine {
	m := logLine{}
	s := strings.TrimSpace(line)
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsRune(s[:eq], ' ') {
			break
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			sp := strings.IndexByte(s, ' ')
			if sp < 0 {
				sp = len(s)
			}
			val, s = s[:sp], s[sp:]
		}
		m[key] = val
		s = strings.TrimLeft(s, " ")
	}
	return m
}

// matches reports whether l has every key of want with the same value.
func (l logLine) matches(want map[string]string) bool {
	for k, v := range want {
		if l[k] != v {
			return false
		}
	}
	return true
}

// parseLog parses every line of a text log.
func parseLog(s string) []logLine {
	var out []logLine
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, parseLogLine(line))
		}
	}
	return out
}

// proc is a pbxgate subprocess.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stdout *logBuffer
	stderr *logBuffer
	done   chan struct{} // closed once the process has exited

	mu      sync.Mutex // guards stopped
	stopped bool       // stop has run
}

// startProc runs pbxgate with args. At cleanup a still-running process is
// stopped with SIGTERM and must exit cleanly; a failed test gets its stderr.
func startProc(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, stdout: newLogBuffer(), stderr: newLogBuffer(), done: make(chan struct{})}
	p.cmd = exec.Command(pbxgateBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = cleanEnv()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting pbxgate: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pbxgate %s stderr:\n%s", strings.Join(args, " "), p.stderr.String())
		}
	})
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 for a signal). ok is false when it is still running.
func (p *proc) wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// waitExit waits for a process that is expected to end by itself and
// returns its exit code; the test fails when it is still running after
// timeout. Cleanup then asserts nothing more about it.
func (p *proc) waitExit(timeout time.Duration) int {
	p.t.Helper()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	code, ok := p.wait(timeout)
	if !ok {
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("pbxgate still running after %v:\n%s", timeout, p.stderr.String())
	}
	return code
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// stop sends SIGTERM and asserts that the process exits with code 0 within
// stopTimeout. It does nothing the second time.
func (p *proc) stop() {
	p.t.Helper()
	p.mu.Lock()
	already := p.stopped
	p.stopped = true
	p.mu.Unlock()
	if already {
		return
	}
	if p.exited() {
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			p.t.Errorf("pbxgate had already exited with code %d", code)
		}
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	code, ok := p.wait(stopTimeout)
	if !ok {
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("pbxgate did not exit within %v of SIGTERM", stopTimeout)
		return
	}
	if code != 0 {
		p.t.Errorf("pbxgate exited with code %d after SIGTERM, want 0", code)
	}
}

// waitLog waits until a stderr line matches every key=value of want and
// returns it; the test fails when none does in time.
func (p *proc) waitLog(want map[string]string) logLine {
	p.t.Helper()
	var found logLine
	s, ok := p.stderr.waitFor(logTimeout, p.done, func(s string) bool {
		for _, l := range parseLog(s) {
			if l.matches(want) {
				found = l
				return true
			}
		}
		return false
	})
	if !ok {
		p.t.Fatalf("no log line with %v in pbxgate's stderr:\n%s", want, s)
	}
	return found
}

// waitLogContains waits until a stderr line's msg contains substr.
func (p *proc) waitLogContains(substr string) logLine {
	p.t.Helper()
	var found logLine
	s, ok := p.stderr.waitFor(logTimeout, p.done, func(s string) bool {
		for _, l := range parseLog(s) {
			if strings.Contains(strings.ToLower(l["msg"]), strings.ToLower(substr)) {
				found = l
				return true
			}
		}
		return false
	})
	if !ok {
		p.t.Fatalf("no log message containing %q in pbxgate's stderr:\n%s", substr, s)
	}
	return found
}

// waitEvent waits for an event line (msg=event) with every attribute of
// want, e.g. {"kind": "rejected_by_gateway", "reason": "denied_path"}.
func (p *proc) waitEvent(want map[string]string) logLine {
	p.t.Helper()
	w := map[string]string{"msg": "event"}
	for k, v := range want {
		w[k] = v
	}
	return p.waitLog(w)
}

// countEvents returns how many event lines match want so far.
func (p *proc) countEvents(want map[string]string) int {
	n := 0
	for _, l := range parseLog(p.stderr.String()) {
		if l["msg"] == "event" && l.matches(want) {
			n++
		}
	}
	return n
}

// gateway is a running `pbxgate serve`.
type gateway struct {
	*proc
	config string // path of its configuration file
}

// startGateway writes yamlText to a configuration file, starts `pbxgate
// serve -c` on it and waits until every listener logs that it is listening.
func startGateway(t testing.TB, yamlText string) *gateway {
	t.Helper()
	path := writeFile(t, t.TempDir(), "pbxgate.yaml", yamlText)
	g := &gateway{proc: startProc(t, "serve", "-c", path), config: path}
	g.waitListening(yamlText)
	return g
}

// waitListening waits for a "listening" log line naming each listener of
// yamlText. Waiting for the log rather than probing the ports keeps probe
// connections out of the events the tests look at.
func (g *gateway) waitListening(yamlText string) {
	g.t.Helper()
	var doc struct {
		Listeners []struct {
			Name    string `yaml:"name"`
			Address string `yaml:"address"`
		} `yaml:"listeners"`
	}
	if err := yaml.Unmarshal([]byte(yamlText), &doc); err != nil {
		g.t.Fatalf("test config is not YAML: %v", err)
	}
	for _, l := range doc.Listeners {
		want := map[string]string{"msg": "listening", "listener": l.Name}
		s, ok := g.stderr.waitFor(startTimeout, g.done, func(s string) bool {
			for _, line := range parseLog(s) {
				if line.matches(want) {
					return true
				}
			}
			return false
		})
		if !ok {
			if g.exited() {
				g.t.Fatalf("pbxgate exited with code %d before listener %s was up:\n%s",
					g.cmd.ProcessState.ExitCode(), l.Name, s)
			}
			g.t.Fatalf("listener %s (%s) not up within %v:\n%s", l.Name, l.Address, startTimeout, s)
		}
	}
}

// reload writes yamlText over the configuration file and sends SIGHUP.
func (g *gateway) reload(yamlText string) {
	g.t.Helper()
	if err := os.WriteFile(g.config, []byte(yamlText), 0o600); err != nil {
		g.t.Fatal(err)
	}
	g.signal(syscall.SIGHUP)
}

// run runs an external program with a time limit and returns its standard
// output, standard error and exit code (-1 when it could not run).
func run(t testing.TB, env []string, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no answer within %v", name, strings.Join(args, " "), cmdTimeout)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return o.String(), e.String(), code
}

// curlResult is what one curl run produced.
type curlResult struct {
	Status  int    // HTTP status; 0 when there was no response
	Version string // %{http_version}: "1.1", "2", ...
	Body    string // response body (with headers when -i was given)
	Exit    int    // curl's exit code
	Stderr  string
}

const curlMarker = "\n--pbxgate-e2e-curl--"

// curl runs curl with args plus options that keep it quiet, bounded and off
// any proxy, and returns the response.
func curl(t testing.TB, args ...string) curlResult {
	t.Helper()
	bin := needBinary(t, "curl", "curl")
	full := append([]string{"-sS", "--noproxy", "*", "--max-time", "10",
		"-w", curlMarker + "%{http_code} %{http_version}"}, args...)
	out, errOut, code := run(t, cleanEnv(), bin, full...)
	r := curlResult{Exit: code, Stderr: errOut}
	i := strings.LastIndex(out, curlMarker)
	if i < 0 {
		r.Body = out
		return r
	}
	r.Body = out[:i]
	status, version, _ := strings.Cut(out[i+len(curlMarker):], " ")
	r.Status, _ = strconv.Atoi(status)
	r.Version = strings.TrimSpace(version)
	return r
}

// resolve is curl's --resolve argument sending host:port of addr to
// 127.0.0.1, and the URL for path on it.
func resolve(scheme, host, addr, path string) (flag, url string) {
	port := portOf(addr)
	return host + ":" + port + ":127.0.0.1", scheme + "://" + host + ":" + port + path
}

// curlHost fetches scheme://host:port/path from the gateway listening on
// addr, resolving host to 127.0.0.1 the way a client with DNS would.
func curlHost(t testing.TB, scheme, host, addr, path string, args ...string) curlResult {
	t.Helper()
	flag, url := resolve(scheme, host, addr, path)
	return curl(t, append(append([]string{"--resolve", flag}, args...), url)...)
}

// ldapsearch runs ldapsearch with a network timeout and returns its output
// and exit code. env adds variables such as LDAPTLS_CACERT.
func ldapsearch(t testing.TB, env []string, args ...string) (out string, code int) {
	t.Helper()
	bin := needBinary(t, "ldapsearch", "ldap-utils")
	env = cleanEnv(append([]string{"HOME=" + t.TempDir()}, env...)...)
	stdout, stderr, code := run(t, env, bin, append([]string{"-o", "nettimeout=10", "-l", "10"}, args...)...)
	return stdout + stderr, code
}
