// Package netnstest builds throwaway network namespaces for tests that need
// the kernel's packet path: nftables tables, drops, address-bound sockets.
// A test creates its own uniquely named namespaces (and a veth pair between
// two of them with 10.98.7.0/24 and fd98::/64 addresses), runs code or
// programs inside them, and probes TCP and UDP reachability; everything is
// removed at cleanup, even when the test fails.
//
// It needs root and the Debian packages iproute2 (ip) and, for nftables
// tests, nftables (nft). A test that lacks them fails, naming the package
// to install; it is never skipped. The package never touches the host's own
// namespace: no addresses, routes or rules are added there.
//
// It is for tests only and does not clean up namespaces left behind by a
// killed test process (their names carry the process id: pbxnt-<pid>-<n>).
package netnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bin returns the path of the program name, looking in PATH and then in
// /usr/sbin, /sbin and /usr/bin (cron and `env -i` leave the sbin
// directories out), or fails the test naming the Debian package pkg.
func Bin(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Fatalf("needs %s (apt-get install -y %s)", name, pkg)
	return ""
}

// NeedRoot fails the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (network namespaces and nftables); CI runs .ci/run as root")
	}
}

// NeedPeers fails the test unless it runs as root with ip (iproute2) and
// nft (nftables) installed.
func NeedPeers(t testing.TB) {
	t.Helper()
	NeedRoot(t)
	Bin(t, "ip", "iproute2")
	Bin(t, "nft", "nftables")
}

// Run runs a program (found with Bin for ip and nft) and returns its
// combined output; a failure or a run over a minute fails the test.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, resolve(t, name), args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// resolve finds ip and nft with Bin; other names are left to exec.
func resolve(t testing.TB, name string) string {
	t.Helper()
	switch name {
	case "ip":
		return Bin(t, "ip", "iproute2")
	case "nft":
		return Bin(t, "nft", "nftables")
	}
	return name
}

var seq atomic.Int32

// NS is a network namespace created by the test, named pbxnt-<pid>-<n>.
type NS struct {
	Name string
	// FD is an open descriptor of /run/netns/<Name>, for setns and
	// nftables.WithNetNSFd. It is closed at cleanup.
	FD int
}

// NewNS creates a namespace with its loopback up; it is deleted at cleanup.
func NewNS(t testing.TB) *NS {
	t.Helper()
	NeedRoot(t)
	name := fmt.Sprintf("pbxnt-%d-%d", os.Getpid(), seq.Add(1))
	Run(t, "ip", "netns", "add", name)
	ip := resolve(t, "ip")
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	Run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &NS{Name: name, FD: fd}
}

// Do runs fn on an OS thread switched into ns and waits for it. Sockets fn
// creates stay in ns for their whole life. If the thread cannot switch
// back it stays locked, so the Go runtime discards it.
func (ns *NS) Do(t testing.TB, fn func()) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err.Error()
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(ns.FD, unix.CLONE_NEWNET); err != nil {
			done <- err.Error()
			return
		}
		fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- "restore netns: " + err.Error()
			return // the thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		done <- ""
	}()
	if msg := <-done; msg != "" {
		t.Fatalf("in netns %s: %s", ns.Name, msg)
	}
}

// Exec runs a program inside ns (ip netns exec) and returns its combined
// output; a failure fails the test.
func (ns *NS) Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	return Run(t, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command returns an unstarted command that runs name inside ns, for
// programs the test starts and stops itself.
func (ns *NS) Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	ip := Bin(t, "ip", "iproute2")
	return exec.Command(ip, append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// ListenPacket opens a packet socket inside ns (net.ListenPacket's
// arguments); it is closed at cleanup.
func (ns *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	ns.Do(t, func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatalf("listen %s %s in netns %s: %v", network, addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// Lab is a server namespace and a client namespace joined by a veth pair.
// The server has 10.98.7.1 and fd98::1; the client has two addresses of
// each family (A and B), so a test can ban one and watch the other pass.
type Lab struct {
	Srv, Cli     *NS
	Srv4, Srv6   netip.Addr
	CliA4, CliB4 netip.Addr
	CliA6, CliB6 netip.Addr
}

// NewLab builds a Lab. It needs root and iproute2.
func NewLab(t testing.TB) *Lab {
	t.Helper()
	NeedRoot(t)
	Bin(t, "ip", "iproute2")
	l := &Lab{Srv: NewNS(t), Cli: NewNS(t)}
	n := seq.Add(1)
	vs, vc := fmt.Sprintf("nt%ds%d", os.Getpid(), n), fmt.Sprintf("nt%dc%d", os.Getpid(), n)
	Run(t, "ip", "link", "add", vs, "netns", l.Srv.Name, "type", "veth", "peer", "name", vc, "netns", l.Cli.Name)
	l.Srv4, l.CliA4, l.CliB4 = netip.MustParseAddr("10.98.7.1"), netip.MustParseAddr("10.98.7.2"), netip.MustParseAddr("10.98.7.3")
	l.Srv6, l.CliA6, l.CliB6 = netip.MustParseAddr("fd98::1"), netip.MustParseAddr("fd98::2"), netip.MustParseAddr("fd98::3")
	Run(t, "ip", "-n", l.Srv.Name, "addr", "add", "10.98.7.1/24", "dev", vs)
	Run(t, "ip", "-n", l.Srv.Name, "addr", "add", "fd98::1/64", "dev", vs, "nodad")
	Run(t, "ip", "-n", l.Cli.Name, "addr", "add", "10.98.7.2/24", "dev", vc)
	Run(t, "ip", "-n", l.Cli.Name, "addr", "add", "10.98.7.3/24", "dev", vc)
	Run(t, "ip", "-n", l.Cli.Name, "addr", "add", "fd98::2/64", "dev", vc, "nodad")
	Run(t, "ip", "-n", l.Cli.Name, "addr", "add", "fd98::3/64", "dev", vc, "nodad")
	Run(t, "ip", "-n", l.Srv.Name, "link", "set", vs, "up")
	Run(t, "ip", "-n", l.Cli.Name, "link", "set", vc, "up")
	return l
}

// Server listens on TCP and UDP (the same port) on every address of the
// lab's server namespace. TCP connections get "ok"; the source of every
// UDP datagram is reported on Got.
type Server struct {
	TCP  net.Listener
	UDP  net.PacketConn
	Port int
	// Got receives the source of each datagram; when it is full, further
	// sources are dropped.
	Got chan netip.Addr
}

// Serve starts a Server in the server namespace; it stops at cleanup.
func (l *Lab) Serve(t testing.TB) *Server {
	t.Helper()
	s := &Server{Got: make(chan netip.Addr, 256)}
	var err error
	l.Srv.Do(t, func() {
		s.TCP, err = net.Listen("tcp", "[::]:0")
		if err != nil {
			return
		}
		s.Port = s.TCP.Addr().(*net.TCPAddr).Port
		s.UDP, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", s.Port))
		if err != nil {
			s.TCP.Close()
		}
	})
	if err != nil {
		t.Fatalf("listen in server netns: %v", err)
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := s.TCP.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
	go func() {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 1500)
		for {
			_, a, err := s.UDP.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case s.Got <- a.(*net.UDPAddr).AddrPort().Addr().Unmap():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		s.TCP.Close()
		s.UDP.Close()
		<-done
		<-done
	})
	return s
}

// TCPOK reports whether a TCP connection from src (a client address) to
// dst gets the server's greeting within wait.
func (l *Lab) TCPOK(t testing.TB, s *Server, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var c net.Conn
	var err error
	l.Cli.Do(t, func() {
		d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(dst, uint16(s.Port)).String())
	})
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(wait))
	b := make([]byte, 2)
	n, _ := c.Read(b)
	return n == 2 && string(b) == "ok"
}

// UDPOK sends a datagram from src to dst and reports whether the server saw
// it within wait.
func (l *Lab) UDPOK(t testing.TB, s *Server, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var pc net.PacketConn
	var err error
	l.Cli.Do(t, func() {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(src, 0).String())
	})
	if err != nil {
		t.Fatalf("udp client: %v", err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(s.Port)))); err != nil {
		t.Fatalf("udp send: %v", err)
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		select {
		case a := <-s.Got:
			if a == src {
				return true
			}
		case <-deadline.C:
			return false
		}
	}
}

// WaitReachable waits up to limit until every client address reaches the
// server's address of its family over TCP and UDP (a new IPv6 neighbour
// may take a few tries on a busy machine), or fails the test.
func (l *Lab) WaitReachable(t testing.TB, s *Server, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for _, c := range []struct{ src, dst netip.Addr }{{l.CliA4, l.Srv4}, {l.CliB4, l.Srv4}, {l.CliA6, l.Srv6}, {l.CliB6, l.Srv6}} {
		for !l.TCPOK(t, s, c.src, c.dst, 2*time.Second) || !l.UDPOK(t, s, c.src, c.dst, 2*time.Second) {
			if time.Now().After(deadline) {
				t.Fatalf("%v cannot reach %v (no ban yet)", c.src, c.dst)
			}
		}
	}
}
