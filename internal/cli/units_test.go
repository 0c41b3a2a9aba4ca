package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pbxgate/pbxgate/internal/config"
)

// The shipped systemd units must run commands and flags that exist.
func TestSystemdUnits(t *testing.T) {
	units, err := filepath.Glob("../../dist/systemd/*.service")
	if err != nil || len(units) < 2 {
		t.Fatalf("units %v, %v", units, err)
	}
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			cmdline, ok := strings.CutPrefix(line, "ExecStart=")
			if !ok {
				continue
			}
			found = true
			args := strings.Fields(cmdline)
			if filepath.Base(args[0]) != "pbxgate" {
				t.Errorf("%s: ExecStart runs %s", u, args[0])
				continue
			}
			root := newRoot(io.Discard, io.Discard)
			cmd, rest, err := root.Find(args[1:])
			if err != nil || cmd == root {
				t.Errorf("%s: %q is no command: %v", u, cmdline, err)
				continue
			}
			if err := cmd.ParseFlags(rest); err != nil {
				t.Errorf("%s: %q: %v", u, cmdline, err)
			}
			if dir, err := cmd.Flags().GetString("state-dir"); err == nil && dir != config.Defaults().Firewall.StateDir {
				t.Errorf("%s: --state-dir %s, but the default firewall.state_dir is %s", u, dir, config.Defaults().Firewall.StateDir)
			}
			if len(cmd.Flags().Args()) != 0 {
				t.Errorf("%s: %q: stray arguments %q", u, cmdline, cmd.Flags().Args())
			}
		}
		if !found {
			t.Errorf("%s has no ExecStart", u)
		}
	}
}
