package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// gateway is the pbxgate process under test. Its standard output and
// error (the log) go straight to a file, not through a pipe this process
// must keep draining: a reader that fell behind under load would block
// pbxgate's logging and show up as pbxgate latency. The file is read
// afterwards, and polled while waiting for bans.
type gateway struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
	logPath string

	mu       sync.Mutex // guards the fields below
	log      *os.File   // read side of the log file
	partial  []byte     // an unfinished last line
	bans     []banLine
	moreBans int            // bans beyond the cap of bans
	errors   map[string]int // log lines at level ERROR, by message
	tail     []string       // the last lines, for error messages
}

// banLine is one "source banned" log line.
type banLine struct {
	Time time.Time `json:"time"`
	Msg  string    `json:"msg"`
	Src  string    `json:"src"`
}

const (
	maxBanLines = 1 << 20
	tailLines   = 40
	maxLogLine  = 64 << 10 // longer lines are cut
)

// startGateway runs pbxgate serve -c config; wrap (e.g. taskset -c 1) is put
// in front and env added to the environment. Its output goes to logPath.
func startGateway(bin, config, logPath string, wrap, env []string) (*gateway, error) {
	w, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer w.Close() // the child has its own copy
	r, err := os.Open(logPath)
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{}, wrap...), bin, "serve", "-c", config)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	g := &gateway{cmd: cmd, exited: make(chan struct{}), logPath: logPath, log: r}
	go func() {
		g.waitErr = cmd.Wait()
		close(g.exited)
	}()
	return g, nil
}

// readLog takes in the lines written since the last call.
func (g *gateway) readLog() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.log == nil {
		return
	}
	br := bufio.NewReaderSize(g.log, maxLogLine)
	for range 1 << 40 { // ends at the end of the file; the bound only documents that it does
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull): // a very long line: keep its start
			g.keepPartialLocked(line)
			continue
		case err != nil: // the end for now: an unfinished line waits for the rest
			g.keepPartialLocked(line)
			return
		}
		if len(g.partial) > 0 {
			line = append(g.partial, line...)
			g.partial = g.partial[:0]
		}
		g.lineLocked(line[:min(len(line), maxLogLine)])
	}
}

// keepPartialLocked keeps the start of an unfinished line, up to maxLogLine.
func (g *gateway) keepPartialLocked(b []byte) {
	if room := maxLogLine - len(g.partial); room > 0 {
		g.partial = append(g.partial, b[:min(len(b), room)]...)
	}
}

func (g *gateway) lineLocked(line []byte) {
	var ban banLine
	if bytes.Contains(line, []byte(`"source banned"`)) && json.Unmarshal(line, &ban) == nil && ban.Msg == "source banned" {
		if len(g.bans) < maxBanLines {
			g.bans = append(g.bans, ban)
		} else {
			g.moreBans++
		}
	}
	if bytes.Contains(line, []byte(`"level":"ERROR"`)) {
		var l struct{ Msg string }
		if json.Unmarshal(line, &l) != nil || l.Msg == "" {
			l.Msg = "(unparsed)"
		}
		if g.errors == nil {
			g.errors = map[string]int{}
		}
		if _, ok := g.errors[l.Msg]; ok || len(g.errors) < 100 {
			g.errors[l.Msg]++
		} else {
			g.errors["(other)"]++
		}
	}
	if len(g.tail) == tailLines {
		g.tail = append(g.tail[:0], g.tail[1:]...)
	}
	g.tail = append(g.tail, strings.TrimRight(string(line), "\n"))
}

// banCount returns the bans logged so far.
func (g *gateway) banCount() int {
	g.readLog()
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.bans) + g.moreBans
}

// bansFrom returns the sources of the bans logged so far from the n-th on.
func (g *gateway) bansFrom(n int) []string {
	g.readLog()
	g.mu.Lock()
	defer g.mu.Unlock()
	var srcs []string
	for _, b := range g.bans[min(n, len(g.bans)):] {
		srcs = append(srcs, b.Src)
	}
	return srcs
}

// forwardBans sends the attackers a "ban ADDR" line for each ban pbxgate
// logs, every 100 ms, until stop is closed: they count an attempt left
// unanswered after their ban as refused (held).
func (g *gateway) forwardBans(att *child, stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	sent := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		srcs := g.bansFrom(sent)
		for _, s := range srcs {
			if att.send("ban "+s) != nil {
				return // the child is gone; its report says why
			}
		}
		sent += len(srcs)
	}
}

// waitBans waits until at least want bans are logged, no ban was logged
// for quiet, max passed, or the process exited.
func (g *gateway) waitBans(want int, quiet, max time.Duration) {
	end := time.Now().Add(max)
	last, lastAt := -1, time.Now()
	for time.Now().Before(end) {
		n := g.banCount()
		if n >= want {
			return
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) >= quiet {
			return
		}
		select {
		case <-g.exited:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail returns the last log lines, for an error message.
func (g *gateway) logTail() string {
	g.readLog()
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.tail, "\n")
}

// waitListening polls addr with TCP connects until one succeeds, the
// process exits, or timeout passes.
func (g *gateway) waitListening(addr string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		select {
		case <-g.exited:
			return fmt.Errorf("pbxgate exited during start-up (%v):\n%s", g.waitErr, g.logTail())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pbxgate did not listen on %s within %v:\n%s", addr, timeout, g.logTail())
}

// stop sends SIGTERM and waits up to grace, then kills. Idempotent.
func (g *gateway) stop(grace time.Duration) error {
	select {
	case <-g.exited:
	default:
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(grace):
			_ = g.cmd.Process.Kill()
			<-g.exited
			g.closeLog()
			return fmt.Errorf("pbxgate did not exit within %v of SIGTERM; killed", grace)
		}
	}
	g.closeLog()
	var ee *exec.ExitError
	if errors.As(g.waitErr, &ee) {
		return fmt.Errorf("pbxgate exited with %v:\n%s", g.waitErr, g.logTail())
	}
	return g.waitErr
}

// closeLog reads the rest of the log and closes it.
func (g *gateway) closeLog() {
	g.readLog()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.log != nil {
		if len(g.partial) > 0 {
			g.lineLocked(g.partial)
			g.partial = nil
		}
		g.log.Close()
		g.log = nil
	}
}

// cpuSeconds returns the user+system CPU time of process pid so far, from
// /proc/PID/stat (in USER_HZ ticks, 100 per second on Linux).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/PID/stat;
// the command name (field 2) may hold spaces and parentheses, so fields are
// counted after its closing parenthesis.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command field")
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return float64(ut+st) / 100, nil
}

// peakRSS returns VmHWM of process pid in KiB, or 0.
func peakRSS(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}
