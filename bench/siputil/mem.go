package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbxgate/pbxgate/internal/siptest"
)

// memConfig is one memory measurement: open want flows (UDP) or
// connections (TLS) through pbxgate at target, each registering one user,
// then read the memory of process pid.
type memConfig struct {
	kind    string // "udp" or "tls"
	target  netip.AddrPort
	want    int
	pid     int
	src     netip.Addr    // first source address; sources advance every perIP sockets
	perIP   int           // sockets per source address
	srcPort int           // UDP: first source port on each address
	workers int           // sockets opened concurrently
	timeout time.Duration // per answer (UDP: per attempt)
	tries   int           // UDP: REGISTER attempts per flow
	settle  time.Duration // wait before reading the memory
	maxTime time.Duration // stop opening after this long
}

// memResult is printed as one "SIPMEM k=v ..." line.
type memResult struct {
	Kind      string
	Want, N   int // asked for, and tried after the open-file limits
	Open      int // sockets open at the measurement
	OK        int // got a 200 to their REGISTER
	Failed    int // no socket, no answer or another answer
	Statuses  map[string]int
	Before    procMem
	After     procMem
	SetupSecs float64
	CappedBy  string // why N < Want, or ""
	PortRange int    // ephemeral ports per local address (UDP upstream sockets)
}

func (r memResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "SIPMEM kind=%s want=%d n=%d open=%d ok=%d failed=%d rss_before_kb=%d rss_kb=%d hwm_kb=%d fds_before=%d fds=%d setup_secs=%.2f port_range=%d",
		r.Kind, r.Want, r.N, r.Open, r.OK, r.Failed, r.Before.RSSKB, r.After.RSSKB, r.After.HWMKB, r.Before.FDs, r.After.FDs, r.SetupSecs, r.PortRange)
	if r.CappedBy != "" {
		fmt.Fprintf(&b, " capped_by=%s", r.CappedBy)
	}
	keys := make([]string, 0, len(r.Statuses))
	for k := range r.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " failed_%s=%d", k, r.Statuses[k])
	}
	return b.String()
}

// source returns the source address of socket i: first + i/perIP. It stays
// in 127.0.0.0/8, where every address is local on Linux.
func source(first netip.Addr, i, perIP int) (netip.Addr, error) {
	if !first.Is4() {
		return netip.Addr{}, fmt.Errorf("source address %v is not IPv4 (want 127.0.0.0/8)", first)
	}
	a := first.As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i / perIP)
	out := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	if a[0] != 127 || out.As4()[0] != 127 {
		return netip.Addr{}, fmt.Errorf("source address %v + %d leaves 127.0.0.0/8", first, i/perIP)
	}
	return out, nil
}

// portRange is the size of the kernel's ephemeral port range: the most UDP
// sockets that can autobind on one local address.
func portRange() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || hi < lo {
		return 0
	}
	return hi - lo + 1
}

// opener opens socket i and registers through it. It returns what must be
// kept open (nil if nothing was opened) and "" on a 200, else why not.
type opener func(ctx context.Context, i int, src netip.Addr) (io.Closer, string)

// measure opens the sockets with cfg.workers goroutines, reads pbxgate's
// memory and closes them again.
func measure(ctx context.Context, cfg memConfig, open opener) (memResult, error) {
	res := memResult{Kind: cfg.kind, Want: cfg.want, Statuses: map[string]int{}, PortRange: portRange()}
	perSocket := 1
	if cfg.kind == "tls" {
		perSocket = 2 // client connection + backend connection
	}
	own, err := raiseNoFile(cfg.want + 256)
	if err != nil {
		return res, err
	}
	peer, err := procNoFile(cfg.pid)
	if err != nil {
		return res, fmt.Errorf("pbxgate's open-file limit: %w", err)
	}
	res.N = cfg.want
	if n := own - 200; n < res.N {
		res.N, res.CappedBy = n, fmt.Sprintf("siputil-nofile-%d", own)
	}
	if n := (peer - 200) / perSocket; n < res.N {
		res.N, res.CappedBy = n, fmt.Sprintf("pbxgate-nofile-%d", peer)
	}
	if res.N <= 0 {
		return res, fmt.Errorf("open-file limits too low (siputil %d, pbxgate %d)", own, peer)
	}
	if res.Before, err = readProcMem(cfg.pid); err != nil {
		return res, err
	}

	openCtx, cancel := context.WithTimeout(ctx, cfg.maxTime)
	defer cancel()
	held := make([]io.Closer, res.N)
	fails := make([]string, res.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range min(cfg.workers, res.N) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= res.N {
					return
				}
				if openCtx.Err() != nil {
					fails[i] = "not-tried"
					continue
				}
				src, err := source(cfg.src, i, cfg.perIP)
				if err != nil {
					fails[i] = "source"
					continue
				}
				held[i], fails[i] = open(openCtx, i, src)
			}
		}()
	}
	wg.Wait()
	res.SetupSecs = time.Since(start).Seconds()
	defer func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range res.N {
		if held[i] != nil {
			res.Open++
		}
		if fails[i] == "" {
			res.OK++
		} else {
			res.Failed++
			res.Statuses[fails[i]]++
		}
	}
	select {
	case <-time.After(cfg.settle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	if res.After, err = readProcMem(cfg.pid); err != nil {
		return res, err
	}
	return res, nil
}

// udpOpener sends one REGISTER from a new UDP socket and waits for the
// answer, retrying cfg.tries times.
//
// The socket binds a fixed port, cfg.srcPort + i%perIP, rather than an
// ephemeral one: pbxgate's upstream sockets autobind ephemeral ports on the
// wildcard address, which conflict with every client socket on the same
// port number whatever its address, and the client sockets would halve the
// flows pbxgate can open (remote clients take no local ports).
func udpOpener(cfg memConfig) opener {
	return func(ctx context.Context, i int, src netip.Addr) (io.Closer, string) {
		port := uint16(cfg.srcPort + i%cfg.perIP)
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, port)))
		if err != nil {
			c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		}
		if err != nil {
			return nil, "socket"
		}
		local := c.LocalAddr().(*net.UDPAddr).AddrPort()
		msg := register("UDP", local, fmt.Sprintf("u%d", i), i)
		buf := make([]byte, 4096)
		for range cfg.tries {
			if ctx.Err() != nil {
				break
			}
			if _, err := c.WriteToUDPAddrPort(msg, cfg.target); err != nil {
				return c, "send"
			}
			_ = c.SetReadDeadline(time.Now().Add(cfg.timeout))
			for {
				n, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					break // timeout: send again
				}
				switch code := status(buf[:n]); {
				case code == 200:
					return c, ""
				case code >= 200:
					return c, fmt.Sprintf("status-%d", code)
				}
				// provisional or garbage: keep waiting until the deadline
			}
		}
		return c, "no-answer"
	}
}

// tlsOpener opens one SIP-over-TLS connection, sends one REGISTER and
// waits for the answer; the connection stays open.
func tlsOpener(cfg memConfig) opener {
	tcfg := &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"} //nolint:gosec // pbxgate's throw-away certificate
	return func(ctx context.Context, i int, src netip.Addr) (io.Closer, string) {
		ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		raw, err := d.DialContext(ctx, "tcp", cfg.target.String())
		if err != nil {
			return nil, "connect"
		}
		c := tls.Client(raw, tcfg)
		if err := c.HandshakeContext(ctx); err != nil {
			return c, "handshake"
		}
		local := raw.LocalAddr().(*net.TCPAddr).AddrPort()
		if _, err := c.Write(register("TLS", local, fmt.Sprintf("u%d", i), i)); err != nil {
			return c, "send"
		}
		deadline, _ := ctx.Deadline()
		_ = c.SetReadDeadline(deadline)
		r := bufio.NewReaderSize(c, 1024)
		for {
			msg, err := siptest.ReadMessage(r)
			if err != nil {
				return c, "no-answer"
			}
			switch code := status(msg); {
			case code == 200:
				_ = c.SetReadDeadline(time.Time{})
				return c, ""
			case code >= 200:
				return c, fmt.Sprintf("status-%d", code)
			}
		}
	}
}

// runMem is "siputil udp|tls -target A -pid P -n N ...".
func runMem(ctx context.Context, w io.Writer, kind string, args []string) error {
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	target := fs.String("target", "", "pbxgate's SIP listener, IP:port (UDP for udp, TLS for tls)")
	n := fs.Int("n", 0, "flows (udp) or connections (tls) to open")
	pid := fs.Int("pid", 0, "process whose memory is read (pbxgate)")
	src := fs.String("src", "127.16.0.1", "first source address, in 127.0.0.0/8")
	perIP := fs.Int("per-ip", 10, "sockets per source address")
	srcPort := fs.Int("src-port", 20000, "udp: sockets bind ports src-port .. src-port+per-ip-1 (below the ephemeral range)")
	workers := fs.Int("workers", 64, "sockets opened concurrently")
	timeout := fs.Duration("timeout", 2*time.Second, "wait for an answer (udp: per attempt; tls: connect + handshake + answer)")
	tries := fs.Int("tries", 3, "udp: REGISTER attempts per flow")
	settle := fs.Duration("settle", 2*time.Second, "wait before reading the memory")
	maxTime := fs.Duration("max-time", 5*time.Minute, "stop opening after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := memConfig{kind: kind, want: *n, pid: *pid, perIP: *perIP, srcPort: *srcPort, workers: *workers,
		timeout: *timeout, tries: *tries, settle: *settle, maxTime: *maxTime}
	var err error
	if cfg.target, err = netip.ParseAddrPort(*target); err != nil {
		return fmt.Errorf("-target: %w", err)
	}
	if cfg.src, err = netip.ParseAddr(*src); err != nil {
		return fmt.Errorf("-src: %w", err)
	}
	switch {
	case cfg.want <= 0:
		return errors.New("-n must be positive")
	case cfg.pid <= 0:
		return errors.New("-pid is required")
	case cfg.perIP <= 0 || cfg.workers <= 0 || cfg.tries <= 0:
		return errors.New("-per-ip, -workers and -tries must be positive")
	case cfg.srcPort <= 0 || cfg.srcPort+cfg.perIP > 65536:
		return errors.New("-src-port .. -src-port + -per-ip - 1 must be valid ports")
	}
	if _, err := source(cfg.src, cfg.want-1, cfg.perIP); err != nil {
		return err
	}
	open := udpOpener(cfg)
	if kind == "tls" {
		open = tlsOpener(cfg)
	}
	res, err := measure(ctx, cfg, open)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, res)
	return nil
}
