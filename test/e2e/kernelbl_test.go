package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/netnstest"
)

// The kernel blacklist through the real binary: `pbxgate serve` runs in the
// server namespace of a lab (internal/netnstest) with
// firewall.kernel_blacklist enabled, a SIP scanner in the client namespace
// gets itself banned, and the kernel (table inet pbxgate_bl) drops its
// packets before pbxgate sees them.

const kernelBLConfig = `data_dir: {{.DataDir}}
listeners:
  - {name: sip-udp, address: "{{.SIP}}", transport: udp}
services:
  - {name: pbx, protocol: sip, domains: [pbx.example.com], backend: {address: "127.0.0.1:5070"}}
fraud:
  suspicious_per_minute: 3
  weights: {reasons: {scanner: 1}}
  whitelist: [127.0.0.0/8]
admin:
  address: 127.0.0.1:7300
firewall:
  trusted_networks: [10.98.7.4]
  kernel_blacklist: {enabled: true, resync: 10s}
`

// startGatewayInNS is startGateway for a gateway run with `ip netns exec`.
func startGatewayInNS(t *testing.T, ns *netnstest.NS, yamlText string) *gateway {
	t.Helper()
	path := writeFile(t, t.TempDir(), "pbxgate.yaml", yamlText)
	p := startProcCmd(t, ns.Command(t, pbxgateBin, "serve", "-c", path), "serve -c "+path)
	g := &gateway{proc: p, config: path}
	g.waitListening(yamlText)
	return g
}

// startProcCmd is startProc for a prepared command.
func startProcCmd(t *testing.T, c *exec.Cmd, what string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: c, stdout: newLogBuffer(), stderr: newLogBuffer(), done: make(chan struct{})}
	c.Stdout, c.Stderr = p.stdout, p.stderr
	c.Env = cleanEnv()
	if err := c.Start(); err != nil {
		t.Fatalf("starting pbxgate: %v", err)
	}
	go func() {
		c.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("pbxgate %s stderr:\n%s", what, p.stderr.String())
		}
	})
	return p
}

// cliInNS runs a pbxgate admin command inside ns against the gateway's
// configuration; it must exit 0.
func (g *gateway) cliInNS(ns *netnstest.NS, args ...string) string {
	g.t.Helper()
	ip := needBinary(g.t, "ip", "iproute2")
	out, errOut, code := run(g.t, cleanEnv(), ip, append([]string{"netns", "exec", ns.Name, pbxgateBin}, append(args, "-c", g.config)...)...)
	if code != 0 {
		g.t.Fatalf("pbxgate %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// scannerRegister is a REGISTER with a scanner's User-Agent: the gateway
// answers nothing and reports a rejected_by_gateway event (reason scanner).
func scannerRegister(src netip.Addr, n int64) []byte {
	return []byte(fmt.Sprintf("REGISTER sip:pbx.example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[1]s:5062;branch=z9hG4bK-kbl%[2]d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:100@pbx.example.com>;tag=kbl%[2]d\r\n"+
		"To: <sip:100@pbx.example.com>\r\n"+
		"Call-ID: kbl%[2]d@%[1]s\r\n"+
		"CSeq: 1 REGISTER\r\n"+
		"Contact: <sip:100@%[1]s:5062>\r\n"+
		"User-Agent: friendly-scanner\r\n"+
		"Expires: 60\r\n"+
		"Content-Length: 0\r\n\r\n", src, n))
}

var sipSeq atomic.Int64

// sendSIP sends n scanner REGISTERs from src (an address of the client
// namespace) to dst.
func sendSIP(t *testing.T, l *netnstest.Lab, src netip.Addr, dst netip.AddrPort, n int) {
	t.Helper()
	pc := l.Cli.ListenPacket(t, "udp", netip.AddrPortFrom(src, 0).String())
	defer pc.Close()
	for range n {
		if _, err := pc.WriteTo(scannerRegister(src, sipSeq.Add(1)), net.UDPAddrFromAddrPort(dst)); err != nil {
			t.Fatalf("send from %v: %v", src, err)
		}
	}
}

var dropCounter = regexp.MustCompile(`ip saddr @bl4 counter packets (\d+)`)

// kernelDrops reads the packet counter of the bl4 drop rule in ns.
func kernelDrops(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	out := ns.Exec(t, "nft", "list", "chain", "inet", "pbxgate_bl", "prerouting")
	m := dropCounter.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no bl4 drop rule with a counter:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// inSet reports whether the set bl4 in ns lists addr, alone or as the
// start of a range or prefix.
func inSet(t *testing.T, ns *netnstest.NS, addr string) bool {
	t.Helper()
	out := ns.Exec(t, "nft", "list", "set", "inet", "pbxgate_bl", "bl4")
	return regexp.MustCompile(`[{ ,]` + regexp.QuoteMeta(addr) + `[ ,}/-]`).MatchString(out)
}

// waitSet waits up to two seconds until addr is (or is no longer) in bl4.
func waitSet(t *testing.T, ns *netnstest.NS, addr string, want bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); inSet(t, ns, addr) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%s in the kernel set: %v, want %v:\n%s", addr, !want, want, ns.Exec(t, "nft", "list", "table", "inet", "pbxgate_bl"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitDrops waits up to two seconds until the drop counter reaches n.
func waitDrops(t *testing.T, ns *netnstest.NS, n int) int {
	t.Helper()
	got := 0
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if got = kernelDrops(t, ns); got >= n || time.Now().After(deadline) {
			return got
		}
	}
}

func TestKernelBlacklist(t *testing.T) {
	t.Parallel()
	netnstest.NeedPeers(t)
	l := netnstest.NewLab(t)
	sip := netip.AddrPortFrom(l.Srv4, 5060)
	conf := render(t, kernelBLConfig, map[string]any{"SIP": sip.String()})
	g := startGatewayInNS(t, l.Srv, conf)
	a, b := l.CliA4.String(), l.CliB4.String()
	if kernelDrops(t, l.Srv) != 0 {
		t.Fatal("drops before any ban")
	}

	// A scanner from A: the fourth refusal passes the threshold of 3.
	sendSIP(t, l, l.CliA4, sip, 4)
	g.waitLog(map[string]string{"msg": "source banned", "src": a})
	waitSet(t, l.Srv, a, true)
	events := g.countEvents(map[string]string{"src": a})

	before := kernelDrops(t, l.Srv)
	sendSIP(t, l, l.CliA4, sip, 5)
	if got := waitDrops(t, l.Srv, before+5); got < before+5 {
		t.Errorf("kernel dropped %d of 5 packets from the banned source", got-before)
	}
	// B still reaches pbxgate: its REGISTER is reported, not dropped.
	before = kernelDrops(t, l.Srv)
	sendSIP(t, l, l.CliB4, sip, 1)
	g.waitEvent(map[string]string{"reason": "scanner", "src": b})
	if got := kernelDrops(t, l.Srv); got != before {
		t.Errorf("the kernel dropped %d packets of the other address", got-before)
	}
	if n := g.countEvents(map[string]string{"src": a}); n != events {
		t.Errorf("pbxgate saw %d events of the banned source after the ban", n-events)
	}

	// The metrics say so.
	curlBin := needBinary(t, "curl", "curl")
	metrics := l.Srv.Exec(t, curlBin, "-sS", "--noproxy", "*", "--max-time", "10", "http://127.0.0.1:7300/metrics")
	for _, w := range []string{"pbxgate_kernel_blacklist_up 1", `pbxgate_kernel_blacklist_prefixes{family="ipv4"} 1`,
		"pbxgate_kernel_blacklist_adds_total 1", "pbxgate_kernel_blacklist_last_reconcile_timestamp_seconds 1"} {
		if !strings.Contains(metrics, w) {
			t.Errorf("metrics lack %q:\n%s", w, metrics)
		}
	}

	// Unban: A reaches pbxgate again.
	g.cliInNS(l.Srv, "unban", a)
	waitSet(t, l.Srv, a, false)
	before = kernelDrops(t, l.Srv)
	sendSIP(t, l, l.CliA4, sip, 1)
	if _, ok := g.stderr.waitFor(logTimeout, g.done, func(s string) bool {
		n := 0
		for _, line := range parseLog(s) {
			if line["msg"] == "event" && line["src"] == a {
				n++
			}
		}
		return n > events
	}); !ok {
		t.Error("after unban, pbxgate does not see the source")
	}
	if got := kernelDrops(t, l.Srv); got != before {
		t.Errorf("after unban the kernel dropped %d packets", got-before)
	}

	// A trusted network never enters the kernel, even inside a ban.
	g.cliInNS(l.Srv, "ban", "10.98.7.4/30", "--for", "1h")
	waitSet(t, l.Srv, "10.98.7.5", true)
	if out := l.Srv.Exec(t, "nft", "list", "set", "inet", "pbxgate_bl", "bl4"); inSet(t, l.Srv, "10.98.7.4") || !strings.Contains(out, "10.98.7.5-10.98.7.7 ") {
		t.Errorf("the trusted 10.98.7.4 is in the kernel set:\n%s", l.Srv.Exec(t, "nft", "list", "set", "inet", "pbxgate_bl", "bl4"))
	}

	// Trusted networks follow a reload; turning the kernel blacklist off
	// waits for a restart.
	reloaded := strings.Replace(conf, "trusted_networks: [10.98.7.4]", "trusted_networks: [10.98.7.4/31]", 1)
	reloaded = strings.Replace(reloaded, "enabled: true", "enabled: false", 1)
	if reloaded == conf {
		t.Fatal("the test's configuration changed: the reload below changes nothing")
	}
	g.reload(reloaded)
	g.waitLog(map[string]string{"msg": "reload: firewall.kernel_blacklist.enabled changes at the next restart"})
	waitSet(t, l.Srv, "10.98.7.5", false)
	waitSet(t, l.Srv, "10.98.7.6", true)

	// Bans stay in the kernel, with their timeouts, after pbxgate stops.
	g.cliInNS(l.Srv, "ban", b, "--for", "1h")
	waitSet(t, l.Srv, b, true)
	g.stop()
	out := l.Srv.Exec(t, "nft", "list", "set", "inet", "pbxgate_bl", "bl4")
	if !inSet(t, l.Srv, b) || !strings.Contains(out, "expires") {
		t.Errorf("after pbxgate stopped the set lost the ban of %s:\n%s", b, out)
	}
}

// TestKernelBlacklistStartFailure: a gateway that cannot set up the table
// does not start, and says what it needs.
func TestKernelBlacklistStartFailure(t *testing.T) {
	t.Parallel()
	netnstest.NeedPeers(t)
	setpriv := needBinary(t, "setpriv", "util-linux")
	for _, tc := range []struct {
		name  string
		setup func(ns *netnstest.NS) // before the start
		wrap  []string               // runs pbxgate
		want  string
	}{
		{name: "without CAP_NET_ADMIN", wrap: []string{setpriv, "--bounding-set=-net_admin", "--inh-caps=-net_admin"},
			want: "operation not permitted"},
		{name: "foreign set of that name", want: "pbxgate_bl", setup: func(ns *netnstest.NS) {
			ns.Exec(t, "nft", "add table inet pbxgate_bl; add set inet pbxgate_bl bl4 { type ipv6_addr; }")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := netnstest.NewNS(t)
			if tc.setup != nil {
				tc.setup(ns)
			}
			path := writeFile(t, t.TempDir(), "pbxgate.yaml", render(t, kernelBLConfig, map[string]any{"SIP": "127.0.0.1:5060"}))
			args := slices.Concat(tc.wrap, []string{pbxgateBin, "serve", "-c", path})
			p := startProcCmd(t, ns.Command(t, args[0], args[1:]...), "serve")
			if code := p.waitExit(startTimeout); code == 0 {
				t.Fatal("pbxgate started without its kernel blacklist")
			}
			s := p.stderr.String()
			for _, w := range []string{"CAP_NET_ADMIN", "inet pbxgate_bl", "firewall.kernel_blacklist.enabled: false", tc.want} {
				if !strings.Contains(s, w) {
					t.Errorf("the error does not say %q:\n%s", w, s)
				}
			}
			if strings.Contains(s, "token created") {
				t.Error("a start that failed made an admin token first")
			}
		})
	}
}
