// Package nft runs the nft(8) command line for the host firewall: it checks
// and applies whole scripts read from stdin (`nft -c -f -`, `nft -f -`),
// lists pbxgate's own policy table and names the tables present. It can run
// the commands inside a network namespace (`ip netns exec NS nft ...`), which
// the tests use.
//
// It does not build rulesets (package firewall renders them), keep state,
// talk netlink, or decide what to apply; every error carries nft's stderr.
package nft

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Table is the policy table pbxgate owns, as "family name".
const Table = "inet pbxgate"

// ErrNoTable is returned by List when table inet pbxgate does not exist.
var ErrNoTable = errors.New("nft: table inet pbxgate does not exist")

// Runner is the small surface the firewall needs from nft. Implementations
// must be safe to call from one goroutine at a time; scripts are whole nft
// files applied in one transaction.
type Runner interface {
	// Check validates script without changing the kernel (nft -c -f -).
	Check(script string) error
	// Apply loads script atomically (nft -f -): all of it or nothing.
	Apply(script string) error
	// List returns the current text of table inet pbxgate, or ErrNoTable.
	List() (string, error)
	// Tables returns every table present as "family name", sorted as nft
	// prints them.
	Tables() ([]string, error)
}

// Exec is a Runner that executes the nft binary. The zero value runs "nft"
// from PATH in the current network namespace with a 30 s limit per command.
type Exec struct {
	// Path of the nft binary. Empty means "nft" looked up in PATH.
	Path string
	// NetNS, when not empty, runs every command as
	// `ip netns exec NetNS nft ...` (the namespace must exist under
	// /run/netns). Empty means the caller's namespace.
	NetNS string
	// Timeout bounds each command. Zero means 30 s.
	Timeout time.Duration
}

var _ Runner = (*Exec)(nil)

// maxOutput bounds how much stdout/stderr is kept from one command.
const maxOutput = 64 << 20

// Check implements Runner.
func (e *Exec) Check(script string) error {
	_, err := e.run(script, "-c", "-f", "-")
	if err != nil {
		return fmt.Errorf("nft check: %w", err)
	}
	return nil
}

// Apply implements Runner.
func (e *Exec) Apply(script string) error {
	_, err := e.run(script, "-f", "-")
	if err != nil {
		return fmt.Errorf("nft apply: %w", err)
	}
	return nil
}

// List implements Runner.
func (e *Exec) List() (string, error) {
	out, err := e.run("", "list", "table", "inet", "pbxgate")
	if err != nil {
		var ce *CmdError
		if errors.As(err, &ce) && strings.Contains(ce.Stderr, "No such file or directory") {
			return "", ErrNoTable
		}
		return "", fmt.Errorf("nft list: %w", err)
	}
	return out, nil
}

// Tables implements Runner. It reads `nft -t list ruleset` (terse: no set
// elements), which stays fast when a blacklist set holds a million elements
// where `nft list tables` takes over a minute.
func (e *Exec) Tables() ([]string, error) {
	out, err := e.run("", "-t", "list", "ruleset")
	if err != nil {
		return nil, fmt.Errorf("nft list ruleset: %w", err)
	}
	return ParseTables(out), nil
}

// ParseTables returns the "family name" of every `table` line at the start
// of a line in nft's listing output, in order, without duplicates.
func ParseTables(listing string) []string {
	var tables []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(listing))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "table ") {
			continue
		}
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), "{"))
		if len(f) < 3 {
			continue
		}
		t := f[1] + " " + f[2]
		if !seen[t] {
			seen[t] = true
			tables = append(tables, t)
		}
	}
	return tables
}

// CmdError is a failed nft command with its stderr.
type CmdError struct {
	Args   []string // the command line run
	Stderr string   // nft's stderr, trimmed
	Err    error    // the exec error (exit status, timeout, not found)
}

func (e *CmdError) Error() string {
	msg := strings.Join(e.Args, " ") + ": " + e.Err.Error()
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *CmdError) Unwrap() error { return e.Err }

func (e *Exec) run(stdin string, args ...string) (string, error) {
	bin := e.Path
	if bin == "" {
		bin = sbin("nft")
	}
	argv := append([]string{bin}, args...)
	if e.NetNS != "" {
		argv = append([]string{sbin("ip"), "netns", "exec", e.NetNS}, argv...)
	}
	timeout := e.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	stdout := &limitedBuffer{max: maxOutput}
	stderr := &limitedBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	if err == nil && stdout.truncated {
		err = fmt.Errorf("output exceeds %d bytes", maxOutput)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %v", ctx.Err(), timeout)
		}
		return "", &CmdError{Args: argv, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.String(), nil
}

// limitedBuffer keeps at most max bytes and remembers whether more came.
type limitedBuffer struct {
	bytes.Buffer
	max       int
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - b.Len(); len(p) > room {
		p = p[:max(room, 0)]
		b.truncated = true
	}
	b.Buffer.Write(p)
	return n, nil
}

// sbin returns the path of an administration tool: from PATH, else from
// /usr/sbin or /sbin, which a minimal PATH (cron, env -i) lacks.
func sbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}
