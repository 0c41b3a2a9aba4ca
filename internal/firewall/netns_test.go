package firewall

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pbxgate/pbxgate/internal/firewall/nft"
)

// needPeers fails the test unless it runs as root with nft and ip present.
func needPeers(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (network namespaces and nftables); CI runs these tests as root")
	}
	for _, p := range [][2]string{{"nft", "nftables"}, {"ip", "iproute2"}} {
		if _, err := exec.LookPath(p[0]); err != nil {
			t.Fatalf("needs %s (apt-get install -y %s)", p[0], p[1])
		}
	}
}

var nsCounter atomic.Int32

// newNS creates a uniquely named network namespace with lo up, deleted when
// the test ends.
func newNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("pbxfw-%d-%d", os.Getpid(), nsCounter.Add(1))
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	sh(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs fn on an OS thread switched into namespace ns. Sockets created
// by fn stay in ns after it returns.
func inNS(ns string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	defer func() {
		// If the thread cannot go back it stays locked and dies with the
		// goroutine, so no other goroutine runs in ns by accident.
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	return fn()
}

func TestGoldenFilesPassNftCheck(t *testing.T) {
	needPeers(t)
	ns := newNS(t)
	r := &nft.Exec{NetNS: ns}
	files, err := filepath.Glob("testdata/golden/*.nft")
	if err != nil || len(files) < len(goldenSpecs) {
		t.Fatalf("golden files %v, %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Check(string(b)); err != nil {
				t.Fatalf("nft -c rejects %s: %v", f, err)
			}
		})
	}
	// A broken script is rejected with nft's message.
	err = r.Check("table inet pbxgate {\n chain input { tcp dport 99999 accept }\n}\n")
	var ce *nft.CmdError
	if !errors.As(err, &ce) || !strings.Contains(ce.Stderr, "99999") {
		t.Errorf("Check of a broken script = %v, want a CmdError quoting nft", err)
	}
}

func TestApplyListUninstallInNamespace(t *testing.T) {
	needPeers(t)
	ns := newNS(t)
	r := &nft.Exec{NetNS: ns}
	// Another tool's table, which nothing of ours may touch.
	sh(t, "ip", "netns", "exec", ns, "nft", "add table ip filter; add chain ip filter INPUT { type filter hook input priority 0; policy accept; }; add rule ip filter INPUT tcp dport 1234 drop")

	if _, err := r.List(); !errors.Is(err, nft.ErrNoTable) {
		t.Fatalf("List before apply = %v, want ErrNoTable", err)
	}
	if err := r.Apply(Uninstall()); err != nil {
		t.Fatalf("Uninstall without our table: %v", err)
	}
	script, err := Render(goldenSpecs[1].spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(script); err != nil {
		t.Fatal(err)
	}
	first, err := r.List()
	if err != nil || !strings.Contains(first, "tcp dport 9190 accept") || !strings.Contains(first, "10.0.0.0/8") {
		t.Fatalf("List after apply = %q, %v", first, err)
	}
	if err := r.Apply(script); err != nil {
		t.Fatal(err)
	}
	if again, _ := r.List(); again != first {
		t.Errorf("re-apply changed the table:\n%s", Diff(first, again))
	}
	tables, err := r.Tables()
	if err != nil || strings.Join(tables, ",") != "ip filter,inet pbxgate" {
		t.Errorf("Tables = %q, %v", tables, err)
	}
	if got := detectOthers(r, os.DirFS(t.TempDir())); strings.Join(got, ",") != "iptables-nft (table ip filter)" {
		t.Errorf("detectOthers = %q", got)
	}
	if err := r.Apply(Uninstall()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.List(); !errors.Is(err, nft.ErrNoTable) {
		t.Errorf("List after uninstall = %v, want ErrNoTable", err)
	}
	if other := sh(t, "ip", "netns", "exec", ns, "nft", "list", "table", "ip", "filter"); !strings.Contains(other, "tcp dport 1234 drop") {
		t.Errorf("the other table changed: %s", other)
	}
}

// lab is a server namespace and a client namespace joined by a veth pair:
// the server has .1 (10.98.N.1, fd98::N:1), the client the other hosts
// asked for.
type lab struct {
	srv, cli string
	n        int
}

func newLab(t *testing.T, clientHosts ...int) *lab {
	t.Helper()
	l := &lab{srv: newNS(t), cli: newNS(t), n: int(nsCounter.Add(1)) % 250}
	vs, vc := fmt.Sprintf("pbxs%d-%d", os.Getpid()%100000, l.n), fmt.Sprintf("pbxc%d-%d", os.Getpid()%100000, l.n)
	sh(t, "ip", "link", "add", vs, "netns", l.srv, "type", "veth", "peer", "name", vc, "netns", l.cli)
	sh(t, "ip", "-n", l.srv, "addr", "add", l.v4(1)+"/24", "dev", vs)
	sh(t, "ip", "-n", l.srv, "addr", "add", l.v6(1)+"/64", "dev", vs, "nodad")
	for _, h := range clientHosts {
		sh(t, "ip", "-n", l.cli, "addr", "add", l.v4(h)+"/24", "dev", vc)
		sh(t, "ip", "-n", l.cli, "addr", "add", l.v6(h)+"/64", "dev", vc, "nodad")
	}
	sh(t, "ip", "-n", l.srv, "link", "set", vs, "up")
	sh(t, "ip", "-n", l.cli, "link", "set", vc, "up")
	return l
}

func (l *lab) v4(host int) string { return fmt.Sprintf("10.98.%d.%d", l.n, host) }
func (l *lab) v6(host int) string { return fmt.Sprintf("fd98::%x:%d", l.n, host) }

// serve starts, inside namespace ns, TCP listeners that accept and close
// and UDP echo servers on every address, stopped when the test ends.
func serve(t *testing.T, ns string, tcpPorts, udpPorts []int) {
	t.Helper()
	serveOn(t, ns, []string{"::"}, tcpPorts, udpPorts)
}

// serveOn is serve bound to each of addrs. A UDP echo bound to "::" answers
// from the address the route picks, which is not always the one asked when
// the namespace has several.
func serveOn(t *testing.T, ns string, addrs []string, tcpPorts, udpPorts []int) {
	t.Helper()
	var wg sync.WaitGroup
	var closers []func() error
	t.Cleanup(func() {
		for _, c := range closers {
			_ = c()
		}
		wg.Wait()
	})
	if err := inNS(ns, func() error {
		for _, a := range addrs {
			if err := listenOn(a, tcpPorts, udpPorts, &wg, &closers); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// listenOn starts the listeners on addr; the caller closes them and waits
// for wg.
func listenOn(addr string, tcpPorts, udpPorts []int, wg *sync.WaitGroup, closers *[]func() error) error {
	for _, p := range tcpPorts {
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err != nil {
			return err
		}
		*closers = append(*closers, ln.Close)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.Close()
			}
		})
	}
	for _, p := range udpPorts {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, strconv.Itoa(p)))
		if err != nil {
			return err
		}
		*closers = append(*closers, pc.Close)
		wg.Go(func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		})
	}
	return nil
}

type probe struct {
	proto, from, to string
	port            int
	open            bool
}

// check runs the probes from the client namespace, in parallel.
func (l *lab) check(t *testing.T, probes []probe) {
	t.Helper()
	checkFrom(t, l.cli, probes)
}

// checkFrom runs the probes from namespace ns, in parallel.
func checkFrom(t *testing.T, ns string, probes []probe) {
	t.Helper()
	errs := make([]error, len(probes))
	var pw sync.WaitGroup
	for i, p := range probes {
		pw.Go(func() {
			// An open probe may retry: the first packet to a new
			// neighbour can wait a whole neighbour-discovery retransmit.
			for attempt := 0; attempt < 3; attempt++ {
				errs[i] = inNS(ns, func() error { return dialProbe(p.proto, p.from, 0, p.to, p.port, p.open) })
				if errs[i] == nil || !p.open {
					break
				}
			}
		})
	}
	pw.Wait()
	for i, p := range probes {
		if errs[i] != nil {
			t.Errorf("%s %s -> [%s]:%d (want open=%v): %v", p.proto, p.from, p.to, p.port, p.open, errs[i])
		}
	}
}

// TestEnforcementInNamespaces applies a policy in a server namespace and
// probes it from a client namespace over a veth pair.
func TestEnforcementInNamespaces(t *testing.T) {
	needPeers(t)
	l := newLab(t, 2, 3, 4)
	v4, v6 := l.v4, l.v6

	// Client .2 is ordinary, .3 trusted, .4 ordinary and outside every From.
	spec := Spec{
		Roles:   []string{"sip"}, // 5060 tcp+udp
		Trusted: pfx(v4(3)+"/32", v6(3)+"/128"),
		Ports: []PortRule{
			{Proto: "tcp", Ports: Port(3307), From: pfx(v4(2) + "/32"), Comment: "only .2"},
			{Proto: "udp", Ports: PortRange{7000, 7010}},
		},
	}
	script, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := &nft.Exec{NetNS: l.srv}
	if err := r.Apply(script); err != nil {
		t.Fatal(err)
	}

	// Listeners inside the server namespace: tcp 5060, 3306 (not opened),
	// 3307 (from .2); udp echo on 5060, 7005, 9999 (not opened).
	serve(t, l.srv, []int{5060, 3306, 3307}, []int{5060, 7005, 9999})

	probes := []probe{
		{"tcp", v4(2), v4(1), 5060, true},
		{"tcp", v6(2), v6(1), 5060, true}, // needs neighbour discovery through the policy
		{"udp", v4(2), v4(1), 5060, true},
		{"udp", v6(2), v6(1), 7005, true},
		{"tcp", v4(2), v4(1), 3306, false},
		{"tcp", v6(2), v6(1), 3306, false},
		{"udp", v4(2), v4(1), 9999, false},
		{"tcp", v4(2), v4(1), 3307, true},
		{"tcp", v4(4), v4(1), 3307, false},
		{"tcp", v6(2), v6(1), 3307, false},
		{"tcp", v4(3), v4(1), 3306, true}, // trusted: every port
		{"tcp", v6(3), v6(1), 3306, true},
		{"udp", v4(3), v4(1), 9999, true},
	}
	l.check(t, probes)

	// Re-applying the same script keeps the same table and behaviour.
	before, err := r.List()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(script); err != nil {
		t.Fatal(err)
	}
	if after, _ := r.List(); after != before {
		t.Errorf("re-apply changed the table:\n%s", Diff(before, after))
	}
	l.check(t, probes)

	// A new spec without trusted networks replaces the set's elements.
	spec.Trusted = nil
	script2, err := Render(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(script2); err != nil {
		t.Fatal(err)
	}
	l.check(t, []probe{
		{"tcp", v4(3), v4(1), 3306, false},
		{"tcp", v6(3), v6(1), 3306, false},
		{"tcp", v4(3), v4(1), 5060, true},
	})
}

// dialProbe checks that port on to is reachable from source from (and
// local port fromPort, 0 for an ephemeral one) or silently dropped: a
// timeout, not a reset or an ICMP unreachable.
func dialProbe(proto, from string, fromPort int, to string, port int, open bool) error {
	const wait = 700 * time.Millisecond
	src := netip.MustParseAddr(from)
	dst := netip.AddrPortFrom(netip.MustParseAddr(to), uint16(port))
	var err error
	switch proto {
	case "tcp":
		d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: src.AsSlice(), Port: fromPort}}
		var c net.Conn
		if c, err = d.Dial("tcp", dst.String()); err == nil {
			_ = c.Close()
		}
	case "udp":
		var c *net.UDPConn
		c, err = net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice(), Port: fromPort}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(wait))
		if _, err = c.Write([]byte("ping")); err == nil {
			buf := make([]byte, 16)
			var n int
			n, err = c.Read(buf)
			if err == nil && string(buf[:n]) != "ping" {
				err = fmt.Errorf("echo %q", buf[:n])
			}
		}
	}
	var ne net.Error
	switch {
	case open && err != nil:
		return fmt.Errorf("want open: %w", err)
	case !open && err == nil:
		return errors.New("want dropped, but it answered")
	case !open && !(errors.As(err, &ne) && ne.Timeout()):
		return fmt.Errorf("want a silent drop (timeout), got %w", err)
	}
	return nil
}
