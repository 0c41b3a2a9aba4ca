package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a helper process: this program re-executed with a subcommand
// ("attack", "backend"). It speaks in lines: it prints one line once set
// up (first), reads lines from the parent, may print more, and ends when
// its input ends.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // standard output, line by line
	stderr *limitedWriter
	first  string
	once   sync.Once
	err    error // from Wait, once reaped
}

// startChild starts self with args at the given nice value (0: unchanged)
// and waits up to 30 s for its first line.
func startChild(self string, nice int, args ...string) (*child, error) {
	argv := append([]string{self}, args...)
	if nice > 0 {
		// Through nice(1): every thread of the child inherits the value,
		// which setpriority on a started Go process would not give.
		path, err := exec.LookPath("nice")
		if err != nil {
			return nil, fmt.Errorf("a niced child needs nice(1) (apt-get install -y coreutils): %w", err)
		}
		argv = append([]string{path, "-n", strconv.Itoa(nice)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{cmd: cmd, lines: make(chan string, 4), stderr: &limitedWriter{n: 64 << 10}}
	cmd.Stderr = c.stderr
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	if c.first, err = c.next(30 * time.Second); err != nil {
		c.abort()
		return nil, fmt.Errorf("%s did not start: %w: %s", args[0], err, c.stderr)
	}
	return c, nil
}

// next returns the child's next output line.
func (c *child) next(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", errors.New("the process ended")
		}
		return l, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("no output within %v", timeout)
	}
}

func (c *child) send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

// finish ends the child's input and waits up to timeout for it to exit.
func (c *child) finish(timeout time.Duration) error {
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s", err, c.stderr)
		}
		return nil
	case <-time.After(timeout):
		c.abort()
		return fmt.Errorf("did not exit within %v of the end of its input", timeout)
	}
}

// wait reaps the child; later calls return the same error.
func (c *child) wait() error {
	c.once.Do(func() {
		for range c.lines { // drain, so that Wait may close the pipe
		}
		c.err = c.cmd.Wait()
	})
	return c.err
}

// abort kills the child if it still runs and reaps it. Idempotent.
func (c *child) abort() {
	_ = c.cmd.Process.Kill()
	c.stdin.Close()
	_ = c.wait()
}

// attackReport waits for the attackers' JSON report, then for their exit;
// it calls done once the report is in (or did not come), before the
// child's input is closed.
func attackReport(c *child, timeout time.Duration, done func()) (attackResult, error) {
	var r attackResult
	l, err := c.next(timeout)
	done()
	if err != nil {
		c.abort()
		return r, fmt.Errorf("attackers: %w: %s", err, c.stderr)
	}
	if err := json.Unmarshal([]byte(l), &r); err != nil {
		c.abort()
		return r, fmt.Errorf("attackers' report %q: %w", l, err)
	}
	if err := c.finish(10 * time.Second); err != nil {
		return r, fmt.Errorf("attackers: %w", err)
	}
	return r, nil
}

// limitedWriter keeps the first n bytes written to it.
type limitedWriter struct {
	mu sync.Mutex
	b  strings.Builder
	n  int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		k := min(len(p), l.n)
		l.n -= k
		l.b.Write(p[:k])
	}
	return len(p), nil
}

func (l *limitedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// backendMain is the login backend child: "fraudflood backend -users N".
// It prints "listening ADDR" and serves until its input ends.
func backendMain(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	n := fs.Int("users", 20, "legitimate users legit0..legitN-1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *n > maxUsers {
		return errors.New("backend: bad -users")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it or dies
		ln.Close()
	}()
	// The process ends when the listener is closed; open connections end
	// with it (pbxgate keeps some alive until it stops).
	b := newLoginBackend(*n)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go b.serve(c)
	}
}
