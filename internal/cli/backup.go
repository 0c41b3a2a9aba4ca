package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pbxgate/pbxgate/internal/adminclient"
	"github.com/pbxgate/pbxgate/internal/atomicfile"
	"github.com/pbxgate/pbxgate/internal/backup"
	"github.com/pbxgate/pbxgate/internal/config"
	"github.com/pbxgate/pbxgate/internal/store"
)

func newBackup(stdout, stderr io.Writer) *cobra.Command {
	var file, out string
	cmd := &cobra.Command{
		Use:   "backup -c FILE [-o ARCHIVE]",
		Short: "Write the configuration and the state (bans, whitelist, history) into one archive",
		Long: "Write FILE and the state store into one archive (tar.gz with checksums).\n\n" +
			"While pbxgate runs, the state is read through its admin socket (a consistent snapshot);\n" +
			"when it is stopped, from the store file directly. -o - writes the archive to standard output.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBackup(cmdContext(cmd), file, out, stdout, stderr)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file")
	cmd.Flags().StringVarP(&out, "output", "o", "", "archive to write (default: pbxgate-backup-DATE.tar.gz in the current directory)")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	return cmd
}

func runBackup(ctx context.Context, file, out string, stdout, stderr io.Writer) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	cfg, err := config.Parse(raw, file)
	if err != nil {
		fmt.Fprintf(stderr, "pbxgate: configuration %s has problems:\n", file)
		problems(stderr, err)
		return &exitError{code: 2, err: errors.New("no backup written")}
	}
	state, err := os.CreateTemp("", "pbxgate-state-*")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(state.Name())
	defer state.Close()
	source, err := snapshot(ctx, cfg, state)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := state.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}

	now := time.Now().UTC()
	a := backup.Archive{Created: now, Version: versionString(), ConfigName: filepath.Base(file), Config: raw, State: state}
	if out == "-" {
		if err := backup.Write(stdout, a); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		return nil
	}
	if out == "" {
		out = "pbxgate-backup-" + now.Format("20060102-150405") + ".tar.gz"
	}
	if err := atomicfile.Write(out, 0o600, func(w io.Writer) error { return backup.Write(w, a) }); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stderr, "backup written to %s (configuration %s, state from %s)\n", out, file, source)
	return nil
}

// snapshot copies the state into w: through the running daemon's admin
// socket when it answers, else from the store file, which must then not be
// in use. It says where the state came from.
func snapshot(ctx context.Context, cfg *config.Config, w io.Writer) (string, error) {
	if s := cfg.Admin.Socket; s != config.Off {
		c, err := adminclient.New(adminclient.Options{Socket: s})
		if err == nil {
			defer c.Close()
			// An unreachable socket fails before any byte is written.
			err = c.State(ctx, w)
			if err == nil {
				return "the running pbxgate (" + s + ")", nil
			}
			var ue *adminclient.UnreachableError
			if !errors.As(err, &ue) {
				return "", fmt.Errorf("reading the state from the running pbxgate: %w", err)
			}
		}
	}
	st, err := store.OpenBolt(cfg.Store.Path, store.BoltOptions{ReadOnly: true})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return "", fmt.Errorf("%w; and its admin socket does not answer, so no consistent copy can be taken", err)
		}
		return "", err
	}
	defer st.Close()
	if err := st.Snapshot(ctx, w); err != nil {
		return "", err
	}
	return cfg.Store.Path, nil
}

func newRestore(stderr io.Writer) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "restore -c FILE ARCHIVE",
		Short: "Put back the configuration and the state from a backup archive (pbxgate stopped)",
		Long: "Check ARCHIVE completely (format, checksums, the configuration, the state file), then\n" +
			"install its state as the store of the archived configuration and its configuration as FILE.\n" +
			"A corrupt or mismatched archive changes nothing. pbxgate must be stopped. A FILE that\n" +
			"differs from the archived one is kept as FILE.before-restore.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(file, args[0], stderr)
		},
	}
	cmd.Flags().StringVarP(&file, "config", "c", defaultConfigFile, "configuration file to write")
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	return cmd
}

func runRestore(file, archive string, stderr io.Writer) error {
	in, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer in.Close()
	state, err := os.CreateTemp("", "pbxgate-restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.Remove(state.Name())
	defer state.Close()
	m, raw, err := backup.Read(in, state)
	if err != nil {
		return fmt.Errorf("restore: %s: %w", archive, err)
	}
	cfg, err := config.Parse(raw, m.ConfigName+" in "+archive)
	if err != nil {
		fmt.Fprintf(stderr, "pbxgate: the configuration in %s has problems:\n", archive)
		problems(stderr, err)
		return &exitError{code: 1, err: errors.New("restore: nothing changed")}
	}
	if _, err := state.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Store.Path), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := store.RestoreBolt(cfg.Store.Path, state); err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("restore: %w; stop pbxgate first (nothing changed)", err)
		}
		return fmt.Errorf("restore: %w (nothing changed)", err)
	}
	kept := ""
	if old, err := os.ReadFile(file); err == nil && !bytes.Equal(old, raw) {
		kept = file + ".before-restore"
		if err := os.WriteFile(kept, old, 0o600); err != nil {
			return fmt.Errorf("restore: the state is restored, the configuration is not: %w", err)
		}
	}
	if err := atomicfile.WriteBytes(file, raw, 0o600); err != nil {
		return fmt.Errorf("restore: the state is restored, the configuration is not: %w", err)
	}
	fmt.Fprintf(stderr, "restored the backup of %s (pbxgate %s): configuration %s, state %s\n",
		m.Created.Format(time.RFC3339), m.PbxgateVersion, file, cfg.Store.Path)
	if kept != "" {
		fmt.Fprintf(stderr, "the previous configuration is kept as %s\n", kept)
	}
	return nil
}
