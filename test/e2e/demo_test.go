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

// printedCommands returns the command lines in the demo's try-it text: the
// curl, ldapsearch and sipp ones, and (in fraud) the ban loop and the
// pbxgate commands that list and lift the ban, which must run last.
func printedCommands(text string) (cmds, fraud []string) {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "#") || l == "":
		case strings.Contains(l, " turn allocations "), strings.HasPrefix(l, "turnutils_"):
			cmds = append(cmds, l)
		case strings.HasPrefix(l, "for "), strings.Contains(l, " --socket "):
			fraud = append(fraud, l)
		case strings.HasPrefix(l, "curl "), strings.Contains(l, "ldapsearch "), strings.HasPrefix(l, "sipp "):
			cmds = append(cmds, l)
		}
	}
	return cmds, fraud
}

func TestDemo(t *testing.T) {
	t.Parallel()
	bash := needBinary(t, "bash", "bash")
	needBinary(t, "curl", "curl")
	needBinary(t, "ldapsearch", "ldap-utils")
	needBinary(t, "sipp", "sip-tester")
	needBinary(t, "turnutils_uclient", "coturn")
	web, dir, sipAddr, turnAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	p := startProc(t, "demo", "--web", web, "--ldap", dir, "--sip", sipAddr, "--turn", turnAddr, "--admin", freeAddr(t), "--data-dir", t.TempDir())
	text, ok := p.stdout.waitFor(startTimeout, p.done, func(s string) bool {
		return strings.Contains(s, "Ctrl-C")
	})
	if !ok {
		t.Fatalf("demo printed no try-it text:\nstdout:\n%s\nstderr:\n%s", text, p.stderr.String())
	}
	lines, fraudLines := printedCommands(text)
	if len(fraudLines) != 3 {
		t.Fatalf("demo printed %d fraud commands, want the ban loop, bans and unban:\n%s", len(fraudLines), text)
	}
	if len(lines) < 15 {
		t.Fatalf("demo printed %d commands, want at least 15:\n%s", len(lines), text)
	}

	// Run every command as a user would paste it, with a shell; the sipp
	// ones from the checkout (their scenario is examples/sipp), each on a
	// local port of its own so they do not meet other tests' sipp.
	var cmds []demoCommand
	for _, l := range lines {
		sh := l
		if strings.HasPrefix(l, "sipp ") {
			sh = "cd ../.. && " + l + " -p " + portOf(freeAddr(t)) + " -timeout 10s"
		}
		out, errOut, code := run(t, cleanEnv(), bash, "-c", sh)
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
	expect(find("sipp", "-s 100", "secret100"), 0, "")
	expect(find("sipp", "-s 101", "-t t1"), 0, "")
	expect(find("sipp", "-ap wrong"), 1, "")
	expect(find("turnutils_stunclient"), 0, "UDP reflexive addr: 127.0.0.1:")
	expect(find("turnutils_uclient", "-w demo-secret 127"), 0, "Total lost packets 0 (0.000000%)")
	expect(find("turnutils_uclient", "-t -u demo", "-w demo-secret"), 0, "Total lost packets 0 (0.000000%)")
	expect(find("turn allocations"), 0, "")

	// The refusals the commands provoked are events in the demo's log.
	p.waitEvent(map[string]string{"kind": "rejected_by_gateway", "reason": "denied_path", "service": "provisioning"})
	p.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "status", "service": "portal"})
	p.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "invalid_credentials", "service": "directory"})
	p.waitEvent(map[string]string{"kind": "rejected_by_service", "reason": "status", "service": "pbx", "user": "100", "proto": "sip"})

	// The ban loop: the first answers are 401, then the source is banned and
	// curl gets no answer (000).
	out, _, code := run(t, cleanEnv(), bash, "-c", fraudLines[0])
	if code != 0 || !strings.Contains(out, "401") || !strings.HasSuffix(strings.TrimSpace(out), "000") {
		t.Errorf("%s\n  exit %d, want 401s then 000:\n%s", fraudLines[0], code, out)
	}
	p.waitLog(map[string]string{"msg": "source banned", "src": "127.0.0.1"})
	out, errOut, code := run(t, cleanEnv(), bash, "-c", fraudLines[1])
	if code != 0 || !strings.Contains(out, "127.0.0.1") || !strings.Contains(out, "auto") {
		t.Errorf("%s\n  exit %d, want a table with the automatic ban of 127.0.0.1:\n%s%s", fraudLines[1], code, out, errOut)
	}
	out, errOut, code = run(t, cleanEnv(), bash, "-c", fraudLines[2])
	if code != 0 {
		t.Errorf("%s\n  exit %d:\n%s%s", fraudLines[2], code, out, errOut)
	}
	if r := curl(t, "http://"+web+"/"); r.Status != 200 {
		t.Errorf("after unban: status %d (curl exit %d), want 200", r.Status, r.Exit)
	}
	p.stop()
}
