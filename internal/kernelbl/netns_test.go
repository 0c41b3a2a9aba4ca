package kernelbl

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needPeers fails the test unless it runs as root with nft and ip present.
func needPeers(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("needs root (network namespaces and nftables); CI runs .ci/run as root")
	}
	for bin, pkg := range map[string]string{"nft": "nftables", "ip": "iproute2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("needs %s (apt-get install -y %s)", bin, pkg)
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var nsSeq atomic.Int32

// netns is a network namespace created by the test.
type netns struct {
	name string
	fd   int
}

func newNS(t testing.TB) *netns {
	t.Helper()
	name := fmt.Sprintf("pbxbl-%d-%d", os.Getpid(), nsSeq.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netns{name: name, fd: fd}
}

// do runs fn on an OS thread switched into ns. Sockets created by fn stay in
// ns. If the thread cannot switch back it is left locked, so Go discards it.
func (ns *netns) do(t testing.TB, fn func()) {
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
		if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
			done <- err.Error()
			return
		}
		fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			done <- "restore netns: " + err.Error()
			return // thread stays locked and dies with the goroutine
		}
		runtime.UnlockOSThread()
		done <- ""
	}()
	if msg := <-done; msg != "" {
		t.Fatalf("in netns %s: %s", ns.name, msg)
	}
}

// lab is a server namespace and a client namespace joined by a veth pair.
// The client has two IPv4 and two IPv6 addresses.
type lab struct {
	srv, cli     *netns
	srv4, srv6   netip.Addr
	cliA4, cliB4 netip.Addr
	cliA6, cliB6 netip.Addr
}

func newLab(t testing.TB) *lab {
	t.Helper()
	needPeers(t)
	l := &lab{srv: newNS(t), cli: newNS(t)}
	n := nsSeq.Add(1)
	vs, vc := fmt.Sprintf("kbs%d", n), fmt.Sprintf("kbc%d", n)
	run(t, "ip", "link", "add", vs, "netns", l.srv.name, "type", "veth", "peer", "name", vc, "netns", l.cli.name)
	l.srv4, l.cliA4, l.cliB4 = netip.MustParseAddr("10.98.7.1"), netip.MustParseAddr("10.98.7.2"), netip.MustParseAddr("10.98.7.3")
	l.srv6, l.cliA6, l.cliB6 = netip.MustParseAddr("fd98::1"), netip.MustParseAddr("fd98::2"), netip.MustParseAddr("fd98::3")
	run(t, "ip", "-n", l.srv.name, "addr", "add", "10.98.7.1/24", "dev", vs)
	run(t, "ip", "-n", l.srv.name, "addr", "add", "fd98::1/64", "dev", vs, "nodad")
	run(t, "ip", "-n", l.cli.name, "addr", "add", "10.98.7.2/24", "dev", vc)
	run(t, "ip", "-n", l.cli.name, "addr", "add", "10.98.7.3/24", "dev", vc)
	run(t, "ip", "-n", l.cli.name, "addr", "add", "fd98::2/64", "dev", vc, "nodad")
	run(t, "ip", "-n", l.cli.name, "addr", "add", "fd98::3/64", "dev", vc, "nodad")
	run(t, "ip", "-n", l.srv.name, "link", "set", vs, "up")
	run(t, "ip", "-n", l.cli.name, "link", "set", vc, "up")
	return l
}

// server listens on TCP and UDP in the server namespace and reports the
// source of every UDP datagram it receives.
type server struct {
	tcp  net.Listener
	udp  net.PacketConn
	port int
	got  chan netip.Addr
}

func (l *lab) serve(t testing.TB) *server {
	t.Helper()
	s := &server{got: make(chan netip.Addr, 64)}
	var err error
	l.srv.do(t, func() {
		s.tcp, err = net.Listen("tcp", "[::]:0")
		if err != nil {
			return
		}
		s.port = s.tcp.Addr().(*net.TCPAddr).Port
		s.udp, err = net.ListenPacket("udp", fmt.Sprintf("[::]:%d", s.port))
	})
	if err != nil {
		t.Fatalf("listen in server netns: %v", err)
	}
	done := make(chan struct{}, 2)
	go func() {
		defer func() { done <- struct{}{} }()
		for {
			c, err := s.tcp.Accept()
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
			_, a, err := s.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			s.got <- a.(*net.UDPAddr).AddrPort().Addr().Unmap()
		}
	}()
	t.Cleanup(func() {
		s.tcp.Close()
		s.udp.Close()
		<-done
		<-done
	})
	return s
}

// tcpOK reports whether a TCP connection from src to the server gets the
// server's greeting within wait.
func (l *lab) tcpOK(t testing.TB, s *server, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var c net.Conn
	var err error
	l.cli.do(t, func() {
		d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(dst, uint16(s.port)).String())
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

// udpOK sends a datagram from src and reports whether the server saw it
// within wait.
func (l *lab) udpOK(t testing.TB, s *server, src, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	var pc net.PacketConn
	var err error
	l.cli.do(t, func() {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(src, 0).String())
	})
	if err != nil {
		t.Fatalf("udp client: %v", err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(s.port)))); err != nil {
		t.Fatalf("udp send: %v", err)
	}
	deadline := time.After(wait)
	for {
		select {
		case a := <-s.got:
			if a == src {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
