package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// pbxgate runs the binary to completion and returns what it printed.
func pbxgate(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return run(t, cleanEnv(), pbxgateBin, args...)
}

// badConfig has one mistake on each line marked "# mistake: FIELD", where
// FIELD is what the message must name.
const badConfig = `data_dir: {{.DataDir}}
listen_everywhere: true  # mistake: listen_everywhere
listeners:
  - name: web
    address: "not-an-address"  # mistake: listeners[0].address
    protocols: [http]
    trusted_proxies: [10.0.0.0/33]  # mistake: listeners[0].trusted_proxies
services:
  - name: portal
    protocol: http
    hosts: [portal.example.test]
    backend: {address: 127.0.0.1:8081}
  - name: portal  # mistake: services[1].name
    protocol: http
    hosts: [other.example.test]
    backend: {address: 127.0.0.1:8082}
`

// mistake is one marked line of badConfig.
type mistake struct {
	line  int
	field string
}

func mistakes(conf string) []mistake {
	var out []mistake
	for i, l := range strings.Split(conf, "\n") {
		if _, field, ok := strings.Cut(l, "# mistake: "); ok {
			out = append(out, mistake{i + 1, strings.TrimSpace(field)})
		}
	}
	return out
}

// assertProblems checks that output has one "file:line: ...field..." line
// per mistake.
func assertProblems(t *testing.T, output, file string, ms []mistake) {
	t.Helper()
	base := filepath.Base(file)
	for _, m := range ms {
		loc := base + ":" + strconv.Itoa(m.line) + ":"
		found := false
		for _, l := range strings.Split(output, "\n") {
			if strings.Contains(l, loc) && strings.Contains(l, m.field) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no problem reported as %s ... %s in:\n%s", loc, m.field, output)
		}
	}
}

func TestCLI(t *testing.T) {
	t.Parallel()

	t.Run("version", func(t *testing.T) {
		out, _, code := pbxgate(t, "version")
		if code != 0 || !strings.HasPrefix(out, "pbxgate ") {
			t.Fatalf("version: exit %d, output %q", code, out)
		}
	})

	t.Run("check a good config", func(t *testing.T) {
		dataDir := filepath.Join(t.TempDir(), "data")
		conf := render(t, selfSignedConfig, map[string]any{
			"DataDir": dataDir, "Web": "127.0.0.1:0", "Portal": "127.0.0.1:8081",
		})
		file := writeFile(t, t.TempDir(), "good.yaml", conf)
		out, errOut, code := pbxgate(t, "check", "-c", file)
		if code != 0 {
			t.Fatalf("check: exit %d\n%s%s", code, out, errOut)
		}
		if !strings.Contains(out, "ok") {
			t.Errorf("check did not say ok: %q", out)
		}
		// check writes nothing: the self-signed certificate serve would
		// generate is only announced.
		if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
			t.Errorf("check created the data directory %s (err %v)", dataDir, err)
		}
		if !strings.Contains(strings.ToLower(out), "self-signed") {
			t.Errorf("check did not warn about the self-signed certificate: %q", out)
		}
	})

	t.Run("check reports every mistake with file and line", func(t *testing.T) {
		conf := render(t, badConfig, nil)
		file := writeFile(t, t.TempDir(), "bad.yaml", conf)
		out, errOut, code := pbxgate(t, "check", "-c", file)
		if code != 1 {
			t.Fatalf("check: exit %d, want 1\n%s%s", code, out, errOut)
		}
		assertProblems(t, out, file, mistakes(conf))
	})

	t.Run("check a missing file", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "absent.yaml")
		out, errOut, code := pbxgate(t, "check", "-c", file)
		if code != 1 || !strings.Contains(out+errOut, "absent.yaml") {
			t.Fatalf("check: exit %d, want 1 naming the file\n%s%s", code, out, errOut)
		}
	})

	t.Run("serve refuses a broken config", func(t *testing.T) {
		conf := render(t, badConfig, nil)
		file := writeFile(t, t.TempDir(), "bad.yaml", conf)
		out, errOut, code := pbxgate(t, "serve", "-c", file)
		if code == 0 {
			t.Fatalf("serve with a broken config exited 0\n%s%s", out, errOut)
		}
		assertProblems(t, errOut, file, mistakes(conf))
	})

	t.Run("serve fails when a listener cannot bind", func(t *testing.T) {
		held, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close()
		conf := render(t, selfSignedConfig, map[string]any{
			"Web": held.Addr().String(), "Portal": "127.0.0.1:8081",
		})
		file := writeFile(t, t.TempDir(), "busy.yaml", conf)
		p := startProc(t, "serve", "-c", file)
		if code := p.waitExit(startTimeout); code == 0 {
			t.Errorf("serve exited 0 with its port taken")
		}
		if !strings.Contains(p.stderr.String(), held.Addr().String()) {
			t.Errorf("stderr does not name the address in use:\n%s", p.stderr.String())
		}
	})
}
