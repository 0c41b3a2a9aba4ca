package cli

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/firewall"
	"github.com/pbxgate/pbxgate/internal/firewall/nft"
	"github.com/pbxgate/pbxgate/internal/firewall/safety"
	"github.com/pbxgate/pbxgate/internal/fwconfig"
)

const (
	// fwLogName is the log of firewall state changes inside the state
	// directory: the only trace of a rollback done by a detached watchdog.
	fwLogName = "events.log"
	fwLogMax  = 1 << 20
)

// newFirewall is `pbxgate firewall ...`: the host firewall from the
// configuration's roles, loaded with a safety net.
func newFirewall(stdout, stderr io.Writer) *cobra.Command {
	parent := &cobra.Command{
		Use:   "firewall plan|check|apply|confirm|rollback|status|boot|uninstall",
		Short: "Write the host firewall (nftables) with a safety net",
		Long: "Build the host firewall from the firewall section of the configuration (roles,\n" +
			"listeners, trusted networks, custom ports, SIP flood limit, GeoIP) into nftables\n" +
			"table inet pbxgate, and load it with a safety net: `apply` reverts to the last\n" +
			"confirmed ruleset unless `confirm` follows within firewall.test_duration, even if\n" +
			"this process is killed, the SSH session drops or the machine reboots.\n" +
			"Other tables (the kernel blacklist inet pbxgate_bl, other tools') are never touched.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return usageErr(errors.New("missing subcommand\nusage: pbxgate firewall plan|check|apply|confirm|rollback|status|boot|uninstall"))
		},
	}
	parent.AddCommand(
		fwPlan(stdout, stderr), fwCheck(stdout, stderr), fwApply(stdout, stderr), fwConfirm(stdout, stderr),
		fwRollback(stdout, stderr), fwStatus(stdout, stderr), fwBoot(stdout, stderr), fwUninstall(stdout, stderr),
	)
	return parent
}

// fwFlags are the flags every firewall verb takes.
type fwFlags struct {
	file     string
	stateDir string
	nft      string
}

func (f *fwFlags) register(cmd *cobra.Command, withStateDir bool) {
	cmd.Flags().StringVarP(&f.file, "config", "c", defaultConfigFile, "configuration file")
	cmd.Flags().StringVar(&f.nft, "nft", "", "the nft binary (default: nft on PATH, else /usr/sbin/nft)")
	if withStateDir {
		cmd.Flags().StringVar(&f.stateDir, "state-dir", "", "the firewall state directory; without it, firewall.state_dir of the configuration")
	}
}

func (f *fwFlags) runner() *nft.Exec { return &nft.Exec{Path: f.nft} }

// built is the configuration's ruleset.
type built struct {
	cfg      *config.Config
	spec     firewall.Spec
	script   string
	warnings []string
}

// build loads the configuration and renders its ruleset.
func (f *fwFlags) build() (*built, error) {
	cfg, err := config.Load(f.file)
	if err != nil {
		return nil, usageErr(err)
	}
	spec, warnings, err := fwconfig.Spec(cfg)
	if err != nil {
		return nil, usageErr(err)
	}
	script, err := firewall.Render(spec)
	if err != nil {
		return nil, usageErr(err)
	}
	return &built{cfg: cfg, spec: spec, script: script, warnings: warnings}, nil
}

// warn prints the configuration's warnings and the other firewall managers
// found on the host.
func (b *built) warn(w io.Writer, run nft.Runner) {
	for _, s := range b.warnings {
		fmt.Fprintln(w, "warning:", s)
	}
	for _, o := range firewall.DetectOthers(run) {
		fmt.Fprintf(w, "warning: another firewall manager is active: %s; a drop there wins over an accept in table inet pbxgate\n", o)
	}
}

// manager opens the safety net over the state directory: --state-dir, or
// the configuration's firewall.state_dir (cfg may be nil: then the file is
// loaded for it).
func (f *fwFlags) manager(cfg *config.Config, stderr io.Writer) (*safety.Manager, func(), error) {
	return f.open(cfg, stderr, true)
}

// open is manager; with logFile false nothing is appended to events.log
// (plan only reads).
func (f *fwFlags) open(cfg *config.Config, stderr io.Writer, logFile bool) (*safety.Manager, func(), error) {
	dir := f.stateDir
	if dir == "" {
		if cfg == nil {
			c, err := config.Load(f.file)
			if err != nil {
				return nil, nil, usageErr(fmt.Errorf("%w\n(--state-dir works without a configuration)", err))
			}
			cfg = c
		}
		dir = cfg.Firewall.StateDir
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find own executable for the revert timer: %w", err)
	}
	rollback := []string{self, "firewall", "rollback", "--state-dir", dir}
	if f.nft != "" {
		nftPath := f.nft
		if strings.ContainsRune(nftPath, '/') {
			if nftPath, err = filepath.Abs(nftPath); err != nil {
				return nil, nil, usageErr(err)
			}
		}
		rollback = append(rollback, "--nft", nftPath)
	}
	log, closeLog := slog.New(slog.DiscardHandler), func() {}
	if logFile {
		log, closeLog = fwLogger(dir, stderr)
	}
	m, err := safety.New(safety.Options{Dir: dir, Loader: f.runner(), Self: rollback, Log: log})
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	return m, closeLog, nil
}

// withManager runs fn on the safety net of the state directory (see
// manager) and maps its error to an exit status.
func (f *fwFlags) withManager(stderr io.Writer, fn func(*safety.Manager) error) error {
	m, closeLog, err := f.manager(nil, stderr)
	if err != nil {
		return fwErr(err)
	}
	defer closeLog()
	return fwErr(fn(m))
}

// loaded returns what pbxgate loaded last, read from the state directory
// without creating it or writing its log (plan changes nothing).
func (f *fwFlags) loaded(cfg *config.Config) (string, uint64, error) {
	dir := f.stateDir
	if dir == "" {
		dir = cfg.Firewall.StateDir
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return "", 0, nil
	}
	m, closeLog, err := f.open(cfg, io.Discard, false)
	if err != nil {
		return "", 0, err
	}
	defer closeLog()
	return m.Loaded()
}

// fwLogger logs state changes to stderr and appends them to events.log in
// dir (kept under fwLogMax by moving a full log to events.log.1).
func fwLogger(dir string, stderr io.Writer) (*slog.Logger, func()) {
	w := stderr
	closeFn := func() {}
	if err := os.MkdirAll(dir, 0o700); err == nil {
		p := filepath.Join(dir, fwLogName)
		if fi, err := os.Stat(p); err == nil && fi.Size() > fwLogMax {
			_ = os.Rename(p, p+".1")
		}
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err == nil {
			w = io.MultiWriter(stderr, f)
			closeFn = func() { _ = f.Close() }
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), closeFn
}

// fwErr maps the safety net's errors to exit codes: 3 for a refusal that
// changed nothing and that the operator can override or fix, 1 otherwise.
func fwErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, safety.ErrWouldCutSSH), errors.Is(err, safety.ErrCheck):
		return &exitError{code: 3, err: err}
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: 1, err: err}
}

// collapseElements replaces each multi-line element block of more than
// collapseAbove elements (GeoIP sets) by one comment line with its count
// and checksum, so that plan stays readable and its diff shows that a set
// changed rather than thousands of lines.
func collapseElements(script string) string {
	const collapseAbove = 20
	lines := strings.Split(script, "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		head := lines[i]
		if !strings.HasPrefix(head, "add element ") || !strings.HasSuffix(head, " {") {
			out = append(out, head)
			continue
		}
		end := i + 1
		for end < len(lines) && lines[end] != "}" {
			end++
		}
		if end == len(lines) || end-i-1 <= collapseAbove {
			out = append(out, head)
			continue
		}
		sum := sha256.Sum256([]byte(strings.Join(lines[i+1:end], "\n")))
		out = append(out, fmt.Sprintf("# %s ... }: %d elements, sha256 %x (plan --full shows them)",
			strings.TrimSuffix(head, " {"), end-i-1, sum[:6]))
		i = end
	}
	return strings.Join(out, "\n")
}

func fwPlan(stdout, stderr io.Writer) *cobra.Command {
	var (
		f    fwFlags
		full bool
	)
	cmd := &cobra.Command{
		Use:   "plan [-c FILE]",
		Short: "Print the ruleset the configuration gives and how it differs from the loaded one",
		Long: "Print the nftables script for table inet pbxgate built from the configuration,\n" +
			"then the difference from the ruleset pbxgate loaded last (the pending one during a\n" +
			"test apply, else the confirmed one). Large element lists (GeoIP sets) are\n" +
			"shown as a count and checksum unless --full. Changes nothing.\n" +
			"Exit status: 0 printed, 2 configuration error.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			b, err := f.build()
			if err != nil {
				return err
			}
			run := f.runner()
			b.warn(stderr, run)
			show := func(s string) string { return s }
			if !full {
				show = collapseElements
			}
			fmt.Fprint(stdout, show(b.script))
			fmt.Fprintln(stdout)
			old, gen, err := f.loaded(b.cfg)
			switch {
			case err != nil:
				fmt.Fprintf(stdout, "# Cannot compare with the loaded ruleset: %v\n", err)
			case gen == 0 && old == "":
				fmt.Fprintln(stdout, "# No ruleset applied yet: `pbxgate firewall apply` loads the one above.")
			case old == b.script:
				fmt.Fprintf(stdout, "# No change from generation %d.\n", gen)
			default:
				fmt.Fprintf(stdout, "# Changes from generation %d:\n", gen)
				fmt.Fprint(stdout, firewall.Diff(show(old), show(b.script)))
			}
			// Drift: something (nft flush ruleset, another manager's reload)
			// removed the table pbxgate loaded.
			if tables, err := run.Tables(); err == nil && old != "" && !slices.Contains(tables, nft.Table) {
				fmt.Fprintf(stderr, "warning: generation %d is not loaded: table %s is missing from the kernel (removed by another tool?); `pbxgate firewall rollback` loads the confirmed ruleset again\n", gen, nft.Table)
			}
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&full, "full", false, "print every set element")
	return cmd
}

func fwCheck(stdout, stderr io.Writer) *cobra.Command {
	var f fwFlags
	cmd := &cobra.Command{
		Use:   "check [-c FILE]",
		Short: "Check the configuration's ruleset with nft -c (loads nothing)",
		Long: "Build the ruleset and let nft check it without loading it (nft -c -f).\n" +
			"Exit status: 0 valid, 2 configuration error, 3 nft rejects the ruleset.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			b, err := f.build()
			if err != nil {
				return err
			}
			run := f.runner()
			b.warn(stderr, run)
			if err := run.Check(b.script); err != nil {
				return fwErr(fmt.Errorf("%w: %w", safety.ErrCheck, err))
			}
			fmt.Fprintln(stdout, "ruleset ok")
			return nil
		},
	}
	f.register(cmd, false)
	return cmd
}

func fwApply(stdout, stderr io.Writer) *cobra.Command {
	var (
		f     fwFlags
		test  time.Duration
		now   bool
		force bool
	)
	cmd := &cobra.Command{
		Use:   "apply [--test D | --now] [--force] [-c FILE]",
		Short: "Load the configuration's ruleset; it reverts unless confirmed",
		Long: "Check and load the ruleset. By default (--test, firewall.test_duration, 10m) a\n" +
			"revert timer outside this process loads the last confirmed ruleset again at the\n" +
			"deadline unless `pbxgate firewall confirm` runs first; the timer survives this\n" +
			"process being killed and the SSH session dropping, and a reboot loads only the\n" +
			"confirmed ruleset. --now loads and confirms at once.\n" +
			"A ruleset that would refuse a new SSH connection from the client running this\n" +
			"command ($SSH_CONNECTION) is refused unless --force.\n" +
			"Exit status: 0 loaded, 1 load failed (the previous ruleset stays), 2 usage or\n" +
			"configuration error, 3 refused (nft check failed, or it would cut SSH).",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if now && cmd.Flags().Changed("test") {
				return usageErr(errors.New("--now and --test exclude each other"))
			}
			b, err := f.build()
			if err != nil {
				return err
			}
			b.warn(stderr, f.runner())
			m, closeLog, err := f.manager(b.cfg, stderr)
			if err != nil {
				return fwErr(err)
			}
			defer closeLog()
			client, port := sshClient(os.Getenv("SSH_CONNECTION"))
			wouldDrop := func(a netip.Addr) bool { return !b.spec.Allows("tcp", port, a) }
			if now {
				gen, err := m.ApplyNow(b.script, client, wouldDrop, force)
				if err != nil {
					return fwErr(err)
				}
				fmt.Fprintf(stdout, "generation %d loaded and confirmed\n", gen)
				return nil
			}
			if !cmd.Flags().Changed("test") {
				test = b.cfg.Firewall.TestDuration.D()
			}
			if self, err := os.Executable(); err == nil && strings.Contains(self, string(filepath.Separator)+"go-build") {
				return usageErr(fmt.Errorf("%s is a temporary build (go run): the revert timer runs this executable at the deadline, "+
					"when it may be gone; build pbxgate (go build) and run the binary, or use --now", self))
			}
			gen, err := m.ApplyTest(b.script, test, client, wouldDrop, force)
			if err != nil {
				return fwErr(err)
			}
			st, err := m.Status()
			if err != nil {
				return fwErr(err)
			}
			deadline := time.Now().Add(test)
			if st.Pending != nil {
				deadline = st.Pending.Deadline
			}
			target := "the last confirmed ruleset (generation " + strconv.FormatUint(st.Confirmed, 10) + ")"
			if !st.HasLastGood {
				target = "no pbxgate policy (table inet pbxgate removed: nothing was confirmed yet)"
			}
			fmt.Fprintf(stdout, "generation %d loaded in test mode (%s timer).\n"+
				"Check that you can still connect, then run `pbxgate firewall confirm`.\n"+
				"Unless confirmed by %s, it reverts to %s.\n",
				gen, st.TimerKind, deadline.Local().Format("2006-01-02 15:04:05 MST"), target)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().DurationVar(&test, "test", 0, "revert unless confirmed within this (default firewall.test_duration)")
	cmd.Flags().BoolVar(&now, "now", false, "load and confirm at once, without a revert timer")
	cmd.Flags().BoolVar(&force, "force", false, "load even if the ruleset would refuse a new SSH connection from this session's client")
	return cmd
}

// sshClient returns the client address and the server port of an
// $SSH_CONNECTION value ("client_ip client_port server_ip server_port");
// port 22 when the value has none.
func sshClient(v string) (netip.Addr, uint16) {
	client := safety.SSHClient(v)
	port := uint16(22)
	if f := strings.Fields(v); len(f) == 4 {
		if p, err := strconv.ParseUint(f[3], 10, 16); err == nil && p > 0 {
			port = uint16(p)
		}
	}
	return client, port
}

func fwConfirm(stdout, stderr io.Writer) *cobra.Command {
	var f fwFlags
	cmd := &cobra.Command{
		Use:   "confirm [-c FILE | --state-dir DIR]",
		Short: "Keep the ruleset of the pending test apply",
		Long: "Make the pending test apply the confirmed ruleset (loaded at boot and by\n" +
			"rollbacks) and cancel its revert timer.\n" +
			"Exit status: 0 confirmed, 1 nothing to confirm or already rolled back.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return f.withManager(stderr, func(m *safety.Manager) error {
				if err := m.Confirm(); err != nil {
					return err
				}
				st, err := m.Status()
				if err == nil {
					fmt.Fprintf(stdout, "generation %d confirmed\n", st.Confirmed)
				}
				return err
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func fwRollback(stdout, stderr io.Writer) *cobra.Command {
	var (
		f         fwFlags
		ifGen     uint64
		waitUntil string
	)
	cmd := &cobra.Command{
		Use:   "rollback [-c FILE | --state-dir DIR]",
		Short: "Load the last confirmed ruleset again, ending a pending test apply",
		Long: "Load the last confirmed ruleset (with none, remove table inet pbxgate) and end a\n" +
			"pending test apply. The revert timer runs this with " + safety.FlagIfGen + " N (only if generation\n" +
			"N is still pending) and " + safety.FlagWaitUntil + " T (wait until T first).\n" +
			"Exit status: 0 done, 1 the load failed.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if waitUntil == "" {
				return f.withManager(stderr, func(m *safety.Manager) error {
					var err error
					if ifGen == 0 {
						err = m.Rollback(0)
					} else {
						err = m.RollbackAt(context.Background(), ifGen, time.Time{})
					}
					if err == nil {
						fmt.Fprintln(stdout, "rolled back to the last confirmed ruleset")
					}
					return err
				})
			}
			deadline, err := time.Parse(time.RFC3339Nano, waitUntil)
			if err != nil {
				return usageErr(fmt.Errorf("%s: %w", safety.FlagWaitUntil, err))
			}
			if ifGen == 0 {
				return usageErr(fmt.Errorf("%s needs %s", safety.FlagWaitUntil, safety.FlagIfGen))
			}
			// The watchdog: SIGTERM means cancelled (confirmed or superseded).
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return f.withManager(stderr, func(m *safety.Manager) error {
				if err := m.RollbackAt(ctx, ifGen, deadline); err != nil && !errors.Is(err, context.Canceled) {
					return err
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().Uint64Var(&ifGen, strings.TrimPrefix(safety.FlagIfGen, "--"), 0, "roll back only if this generation is pending")
	cmd.Flags().StringVar(&waitUntil, strings.TrimPrefix(safety.FlagWaitUntil, "--"), "", "wait until this time (RFC 3339) first")
	return cmd
}

func fwStatus(stdout, stderr io.Writer) *cobra.Command {
	var f fwFlags
	cmd := &cobra.Command{
		Use:   "status [-c FILE | --state-dir DIR]",
		Short: "Show the confirmed and pending rulesets and how the last apply ended",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return f.withManager(io.Discard, func(m *safety.Manager) error {
				st, err := m.Status()
				if err == nil {
					printFWStatus(stdout, st, f.runner())
				}
				return err
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func printFWStatus(w io.Writer, st safety.Status, run nft.Runner) {
	ts := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }
	if st.HasLastGood {
		fmt.Fprintf(w, "confirmed:  generation %d, %s (sha256 %.12s)\n", st.Confirmed, ts(st.ConfirmedAt), st.ConfirmedSHA256)
	} else {
		fmt.Fprintln(w, "confirmed:  none (a rollback or boot removes table inet pbxgate)")
	}
	if p := st.Pending; p != nil {
		state := "loaded"
		if !p.Applied {
			state = "NOT loaded (interrupted apply)"
		}
		fmt.Fprintf(w, "pending:    generation %d, %s, reverts at %s (in %s) by %s timer\n",
			p.Generation, state, ts(p.Deadline), time.Until(p.Deadline).Round(time.Second), p.Timer.Kind)
	} else {
		fmt.Fprintln(w, "pending:    none")
	}
	if l := st.Last; l.Generation != 0 {
		line := fmt.Sprintf("last:       generation %d %s at %s", l.Generation, strings.ReplaceAll(l.Result, "_", " "), ts(l.At))
		if l.Reason != "" {
			line += " (" + l.Reason + ")"
		}
		fmt.Fprintln(w, line)
	}
	tables, err := run.Tables()
	switch {
	case err != nil:
		fmt.Fprintf(w, "kernel:     cannot list tables: %v\n", err)
	default:
		fmt.Fprintf(w, "kernel:     table %s %s, table inet pbxgate_bl %s\n", nft.Table, present(tables, nft.Table), present(tables, "inet pbxgate_bl"))
	}
	fmt.Fprintf(w, "timer:      %s\n", st.TimerKind)
}

func present(tables []string, t string) string {
	if slices.Contains(tables, t) {
		return "loaded"
	}
	return "absent"
}

func fwBoot(stdout, stderr io.Writer) *cobra.Command {
	return stateVerb(stdout, stderr, (*safety.Manager).Boot, "boot: done",
		"boot [-c FILE | --state-dir DIR]",
		"Load the last confirmed ruleset (run by pbxgate-firewall.service at boot)",
		"Load the last confirmed ruleset and nothing else: a test apply pending before a\n"+
			"reboot is recorded as rolled back. Run at boot by pbxgate-firewall.service\n"+
			"(dist/systemd). With no confirmed ruleset it loads nothing.\n"+
			"Exit status: 0 done, 1 the load failed.")
}

func fwUninstall(stdout, stderr io.Writer) *cobra.Command {
	return stateVerb(stdout, stderr, (*safety.Manager).Uninstall,
		"table inet pbxgate removed; nothing is loaded at boot until the next apply",
		"uninstall [-c FILE | --state-dir DIR]",
		"Remove table inet pbxgate and stop loading it at boot",
		"Remove pbxgate's policy table (other tables are untouched, including the kernel\n"+
			"blacklist inet pbxgate_bl, which pbxgate serve manages), end a pending test apply,\n"+
			"and set the confirmed ruleset aside so that boot and rollback load nothing.\n"+
			"Exit status: 0 removed, 1 failed.")
}

// stateVerb is a verb that runs one operation of the safety net and says
// done when it worked.
func stateVerb(stdout, stderr io.Writer, op func(*safety.Manager) error, done, use, short, long string) *cobra.Command {
	var f fwFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return f.withManager(stderr, func(m *safety.Manager) error {
				err := op(m)
				if err == nil {
					fmt.Fprintln(stdout, done)
				}
				return err
			})
		},
	}
	f.register(cmd, true)
	return cmd
}
