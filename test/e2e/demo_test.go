package e2e

import (
	"strings"
	"testing"
)

// demoCommand is one try-it command `pbxgate demo` printed, and what running
// it with bash gave.
type demoCommand struct {
	line string
	out  string
	code int
}

// printedCommands returns the curl and ldapsearch command lines in the
// demo's try-it text.
func printedCommands(text string) []string {
	var cmds []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "curl ") || (strings.Contains(l, "ldapsearch ") && !strings.HasPrefix(l, "#")) {
			cmds = append(cmds, l)
		}
	}
	return cmds
}

func TestDemo(t *testing.T) {
	t.Parallel()
	bash := needBinary(t, "bash", "bash")
	needBinary(t, "curl", "curl")
	needBinary(t, "ldapsearch", "ldap-utils")
	web, dir := freeAddr(t), freeAddr(t)
	p := startProc(t, "demo", "--web", web, "--ldap", dir, "--data-dir", t.TempDir())
	text, ok := p.stdout.waitFor(startTimeout, p.done, func(s string) bool {
		return strings.Contains(s, "Ctrl-C")
	})
	if !ok {
		t.Fatalf("demo printed no try-it text:\nstdout:\n%s\nstderr:\n%s", text, p.stderr.String())
	}
	lines := printedCommands(text)
	if len(lines) < 8 {
		t.Fatalf("demo printed %d commands, want at least 8:\n%s", len(lines), text)
	}

	// Run every command as a user would paste it, with a shell.
	var cmds []demoCommand
	for _, l := range lines {
		out, errOut, code := run(t, cleanEnv(), bash, "-c", l)
		cmds = append(cmds, demoCommand{line: l, out: out + errOut, code: code})
	}
	// find returns the command whose line contains every part.
	find := func(parts ...string) demoCommand {
		t.Helper()
		for _, c := range cmds {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(c.line, p)
			}
			if all {
				return c
			}
		}
		t.Fatalf("the demo printed no command with %q:\n%s", parts, text)
		return demoCommand{}
	}
	expect := func(c demoCommand, code int, contains string) {
		t.Helper()
		if c.code != code || !strings.Contains(c.out, contains) {
			t.Errorf("%s\n  exit %d, want %d; output should contain %q:\n%s", c.line, c.code, code, contains, c.out)
		}
	}

	expect(find("curl -s http://"+web+"/"), 0, "portal answered GET /")
	expect(find("Host: portal.demo.test", "/hello"), 0, "portal answered GET /hello")
	expect(find("--http2", "https://"), 0, "portal answered GET /")
	expect(find("/app/provision/"), 0, "provisioning answered GET /app/provision/")
	expect(find("/login.php"), 0, "403")
	expect(find("xml_cdr_import.php"), 0, "403")
	expect(find("-u demo:wrong"), 0, "401")
	expect(find("ldapsearch", "alice@demo.test", "alice-secret"), 0, "result: 0 Success")
	expect(find("ldapsearch", "bob-secret"), 0, "result: 0 Success")
	expect(find("ldapsearch", "ldaps://", "carol-secret"), 0, "result: 0 Success")
	expect(find("ldapsearch", "-w wrong"), 49, "Invalid credentials")

	// The refusals the commands provoked are events in the demo's log.
	p.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "denied_path", "service": "provisioning"})
	p.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "status", "service": "portal"})
	p.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "invalid_credentials", "service": "directory"})
	p.stop()
}
