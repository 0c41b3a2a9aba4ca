package e2e

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/netnstest"
)

// fwLab is a server namespace where `pbxgate firewall` runs, a client
// namespace that probes it, and two servers: one on a port the
// configuration opens, one on a port nothing opens.
type fwLab struct {
	*netnstest.Lab
	open, closed *netnstest.Server
	dir          string
}

func newFWLab(t *testing.T) *fwLab {
	netnstest.NeedPeers(t)
	netnstest.Bin(t, "nft", "nftables")
	l := &fwLab{Lab: netnstest.NewLab(t), dir: t.TempDir()}
	l.open, l.closed = l.Serve(t), l.Serve(t)
	l.WaitReachable(t, l.open, 20*time.Second)
	l.WaitReachable(t, l.closed, 20*time.Second)
	return l
}

// config writes the configuration name.yaml opening the open server's port (when
// openPort) with client address B trusted, plus extra firewall keys.
func (l *fwLab) config(t *testing.T, name string, openPort bool, extra string) string {
	ports := ""
	if openPort {
		p := strconv.Itoa(l.open.Port)
		ports = "  ports:\n    - {proto: tcp, port: \"" + p + "\"}\n    - {proto: udp, port: \"" + p + "\"}\n"
	}
	y := "data_dir: " + l.dir + "\n" +
		"listeners: [{name: local, address: \"127.0.0.1:1\"}]\n" +
		"firewall:\n" +
		"  trusted_networks: [" + l.CliB4.String() + "]\n" +
		"  state_dir: " + filepath.Join(l.dir, "fw") + "\n" +
		ports + extra
	return writeFile(t, l.dir, name+".yaml", y)
}

// fw runs `pbxgate firewall ARGS` inside the server namespace.
func (l *fwLab) fw(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := l.Srv.Command(t, pbxgateBin, append([]string{"firewall"}, args...)...)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("pbxgate firewall %s: %v", strings.Join(args, " "), err)
	}
	return string(out), code
}

func (l *fwLab) mustFW(t *testing.T, args ...string) string {
	t.Helper()
	out, code := l.fw(t, nil, args...)
	if code != 0 {
		t.Fatalf("pbxgate firewall %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// reach reports whether client address A reaches the server s over TCP,
// over IPv4 and IPv6 alike (it fails the test when the families disagree).
func (l *fwLab) reach(t *testing.T, s *netnstest.Server) bool {
	t.Helper()
	v4, v6 := l.reach46(t, s)
	if v4 != v6 {
		t.Fatalf("IPv4 reaches port %d: %v, IPv6: %v", s.Port, v4, v6)
	}
	return v4
}

func (l *fwLab) reach46(t *testing.T, s *netnstest.Server) (v4, v6 bool) {
	t.Helper()
	return l.TCPOK(t, s, l.CliA4, l.Srv4, time.Second), l.TCPOK(t, s, l.CliA6, l.Srv6, time.Second)
}

// waitReach waits up to limit until both families' reach(s) is want.
func (l *fwLab) waitReach(t *testing.T, s *netnstest.Server, want bool, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		v4, v6 := l.reach46(t, s)
		if v4 == want && v6 == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %d reachable over IPv4 %v, IPv6 %v after %v; want %v", s.Port, v4, v6, limit, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (l *fwLab) tables(t *testing.T) string { return l.Srv.Exec(t, "nft", "list", "tables") }

func TestFirewallCLI(t *testing.T) {
	l := newFWLab(t)
	openCfg := l.config(t, "open", true, "")
	closedCfg := l.config(t, "closed", false, "")
	// The kernel blacklist's table with a ban: no policy verb may touch it.
	l.Srv.Exec(t, "nft", "add table inet pbxgate_bl")
	l.Srv.Exec(t, "nft", "add set inet pbxgate_bl bl4 { type ipv4_addr; flags interval,timeout; }")
	l.Srv.Exec(t, "nft", "add element inet pbxgate_bl bl4 { 192.0.2.7 timeout 1h }")
	banKept := func(t *testing.T) {
		t.Helper()
		if out := l.Srv.Exec(t, "nft", "list set inet pbxgate_bl bl4"); !strings.Contains(out, "192.0.2.7") {
			t.Errorf("the kernel blacklist lost its ban:\n%s", out)
		}
	}

	// Another tool's table: named as a warning, never touched.
	l.Srv.Exec(t, "nft", "add table ip filter")

	// plan and check change nothing.
	out := l.mustFW(t, "plan", "-c", openCfg)
	if !strings.Contains(out, "tcp dport "+strconv.Itoa(l.open.Port)+" accept") || !strings.Contains(out, "No ruleset applied yet") {
		t.Fatalf("plan:\n%s", out)
	}
	if !strings.Contains(out, "warning: another firewall manager is active: iptables-nft (table ip filter)") {
		t.Errorf("plan does not name the other table:\n%s", out)
	}
	l.mustFW(t, "check", "-c", openCfg)
	if strings.Contains(l.tables(t), "inet pbxgate\n") {
		t.Fatal("plan or check loaded a table")
	}

	t.Run("apply now enforces the policy", func(t *testing.T) {
		l.mustFW(t, "apply", "--now", "-c", openCfg)
		if !l.reach(t, l.open) || !l.UDPOK(t, l.open, l.CliA4, l.Srv4, time.Second) {
			t.Error("the opened port is not reachable")
		}
		if l.reach(t, l.closed) || l.UDPOK(t, l.closed, l.CliA4, l.Srv4, time.Second) {
			t.Error("a port nothing opens is reachable")
		}
		if !l.TCPOK(t, l.closed, l.CliB4, l.Srv4, time.Second) {
			t.Error("the trusted address does not pass")
		}
	})

	t.Run("an unconfirmed apply reverts after its CLI is gone", func(t *testing.T) {
		out := l.mustFW(t, "apply", "--test", "3s", "-c", closedCfg)
		if !strings.Contains(out, "loaded in test mode (watchdog timer)") {
			t.Fatalf("apply:\n%s", out)
		}
		// The CLI has exited; only the detached watchdog can revert.
		if l.reach(t, l.open) {
			t.Fatal("the candidate is not in force")
		}
		l.waitReach(t, l.open, true, 15*time.Second)
		st := l.mustFW(t, "status", "--state-dir", filepath.Join(l.dir, "fw"))
		if !strings.Contains(st, "rolled back") || !strings.Contains(st, "(deadline)") || !strings.Contains(st, "pending:    none") {
			t.Errorf("status after the revert:\n%s", st)
		}
		banKept(t)
	})

	t.Run("confirm keeps the ruleset", func(t *testing.T) {
		l.mustFW(t, "apply", "--test", "3s", "-c", closedCfg)
		l.mustFW(t, "confirm", "-c", closedCfg)
		time.Sleep(5 * time.Second) // past the deadline
		if l.reach(t, l.open) {
			t.Fatal("a confirmed ruleset was reverted")
		}
		// Confirming again is harmless.
		if out, code := l.fw(t, nil, "confirm", "-c", closedCfg); code != 0 || !strings.Contains(out, "confirmed") {
			t.Errorf("second confirm: exit %d\n%s", code, out)
		}
	})

	t.Run("a failed load leaves the old ruleset in place", func(t *testing.T) {
		// An nft that checks like the real one but fails every load.
		nftBin := netnstest.Bin(t, "nft", "nftables")
		fake := writeFile(t, l.dir, "nft-fails", "#!/bin/sh\nfor a; do [ \"$a\" = -c ] && exec "+nftBin+" \"$@\"; done\necho 'Error: Could not process rule: No buffer space available' >&2\nexit 1\n")
		if err := os.Chmod(fake, 0o755); err != nil {
			t.Fatal(err)
		}
		out, code := l.fw(t, nil, "apply", "--test", "1m", "--nft", fake, "-c", openCfg)
		if code != 1 || !strings.Contains(out, "No buffer space") {
			t.Fatalf("apply with a failing load: exit %d\n%s", code, out)
		}
		if l.reach(t, l.open) {
			t.Error("the failed candidate is in force")
		}
		if st := l.mustFW(t, "status", "-c", openCfg); !strings.Contains(st, "pending:    none") {
			t.Errorf("a failed apply left pending state:\n%s", st)
		}
	})

	t.Run("apply refuses to cut the SSH client off", func(t *testing.T) {
		ssh := []string{"SSH_CONNECTION=" + l.CliA4.String() + " 50000 " + l.Srv4.String() + " 22"}
		out, code := l.fw(t, ssh, "apply", "-c", openCfg)
		if code != 3 || !strings.Contains(out, "cut off the current SSH client") {
			t.Fatalf("apply over SSH without ssh open: exit %d\n%s", code, out)
		}
		if l.reach(t, l.open) {
			t.Error("the refused ruleset was loaded")
		}
		// The trusted address may apply it; --force overrides.
		trusted := []string{"SSH_CONNECTION=" + l.CliB4.String() + " 50000 " + l.Srv4.String() + " 22"}
		if out, code := l.fw(t, trusted, "apply", "--now", "-c", closedCfg); code != 0 {
			t.Fatalf("apply from a trusted SSH client: exit %d\n%s", code, out)
		}
		if out, code := l.fw(t, ssh, "apply", "--now", "--force", "-c", openCfg); code != 0 {
			t.Fatalf("apply --force: exit %d\n%s", code, out)
		}
		if !l.reach(t, l.open) {
			t.Error("the forced ruleset is not in force")
		}
	})

	t.Run("boot loads the confirmed ruleset, never a pending one", func(t *testing.T) {
		l.mustFW(t, "apply", "--test", "10m", "-c", closedCfg)
		// A reboot: the kernel forgets every table, then the boot unit runs.
		l.Srv.Exec(t, "nft", "delete table inet pbxgate")
		if out := l.mustFW(t, "plan", "-c", openCfg); !strings.Contains(out, "is missing from the kernel") {
			t.Errorf("plan does not notice the missing table:\n%s", out)
		}
		l.mustFW(t, "boot", "--state-dir", filepath.Join(l.dir, "fw"))
		if !l.reach(t, l.open) {
			t.Error("boot did not load the confirmed ruleset (open port closed)")
		}
		if l.reach(t, l.closed) {
			t.Error("boot loaded no policy")
		}
		st := l.mustFW(t, "status", "-c", openCfg)
		if !strings.Contains(st, "(boot)") || !strings.Contains(st, "pending:    none") {
			t.Errorf("status after boot:\n%s", st)
		}
	})

	t.Run("uninstall removes our policy only", func(t *testing.T) {
		l.mustFW(t, "uninstall", "-c", openCfg)
		tables := l.tables(t)
		if strings.Contains(tables, "inet pbxgate\n") || !strings.Contains(tables, "inet pbxgate_bl") || !strings.Contains(tables, "ip filter") {
			t.Fatalf("tables after uninstall:\n%s", tables)
		}
		if !l.reach(t, l.closed) {
			t.Error("ports still closed after uninstall")
		}
		banKept(t)
		l.mustFW(t, "boot", "--state-dir", filepath.Join(l.dir, "fw"))
		if strings.Contains(l.tables(t), "inet pbxgate\n") {
			t.Error("boot loaded a policy after uninstall")
		}
	})
	if log, err := os.ReadFile(filepath.Join(l.dir, "fw", "events.log")); err != nil || !strings.Contains(string(log), "reason=deadline") {
		t.Errorf("events.log (%v):\n%s", err, log)
	}
}

func TestFirewallSIPFloodLimit(t *testing.T) {
	l := newFWLab(t)
	cfg := l.config(t, "flood", true, "  sip_flood_limit: {rate: 5, burst: 5, ports: ["+strconv.Itoa(l.open.Port)+"]}\n")
	l.mustFW(t, "apply", "--now", "-c", cfg)
	// 100 datagrams at once: an ordinary source gets about burst of them
	// through, a trusted one (a carrier whose address a flood may spoof)
	// every one.
	burst := func(src netip.Addr) int {
		var pc net.PacketConn
		var err error
		l.Cli.Do(t, func() { pc, err = net.ListenPacket("udp", netip.AddrPortFrom(src, 0).String()) })
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(l.Srv4, uint16(l.open.Port)))
		for range 100 {
			if _, err := pc.WriteTo([]byte("OPTIONS"), dst); err != nil {
				t.Fatal(err)
			}
		}
		got := 0
		quiet := time.NewTimer(time.Second)
		defer quiet.Stop()
		for {
			select {
			case a := <-l.open.Got:
				if a == src {
					got++
				}
			case <-quiet.C:
				return got
			}
		}
	}
	if n := burst(l.CliA4); n < 5 || n > 20 {
		t.Errorf("an ordinary source got %d of 100 datagrams through a 5/s limit with burst 5", n)
	}
	if n := burst(l.CliB4); n != 100 {
		t.Errorf("a trusted source got %d of 100 datagrams through", n)
	}
}
