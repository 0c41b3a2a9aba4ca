// Package cli is pbxgate's command line: it maps commands and flags onto the
// internal packages (config, gateway, demo) and turns their errors into exit
// codes and messages. It holds no gateway logic itself.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/config"
)

// Version is set at build time with -ldflags "-X .../internal/cli.Version=v1.2.3".
var Version = "dev"

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Main runs the CLI with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "pbxgate:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "pbxgate:", err)
	return 1
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "pbxgate",
		Short:         "The single public door of a VoIP/PBX platform",
		Long:          "pbxgate routes HTTP(S), SIP and LDAP(S) to private services by what the traffic says, serves STUN/TURN,\nterminates TLS, and bans the sources of attacks.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(append([]*cobra.Command{newServe(stderr), newCheck(stdout), newDemo(stdout, stderr), newVersion(stdout), newBackup(stdout, stderr), newRestore(stderr), newTURN(stdout), newFirewall(stdout, stderr)}, adminCommands(stdout, stderr)...)...)
	return root
}

func newVersion(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdout, versionString())
			return nil
		},
	}
}

// release is the version without revision and Go version: Version, or the
// module version the binary was built from.
func release() string {
	if bi, ok := debug.ReadBuildInfo(); ok && Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return Version
}

func versionString() string {
	v := release()
	var rev, goVer string
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVer = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				rev = s.Value[:12]
			}
		}
	}
	out := "pbxgate " + v
	if rev != "" {
		out += " (" + rev + ")"
	}
	if goVer != "" {
		out += " " + goVer
	}
	return out
}

// newLogger builds the process logger from the log section. The level is a
// LevelVar so a reload can change it; the format is fixed for the process.
func newLogger(c config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if strings.EqualFold(c.Format, "json") {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(h), lv
}

func parseLevel(s string) slog.Level {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// problems prints each joined error on its own line.
func problems(w io.Writer, err error) {
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintln(w, "  "+line)
		}
	}
}

var _ = os.Stderr
