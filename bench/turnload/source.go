package main

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// sources hands out the client sockets' local addresses: the ports of the
// kernel's ephemeral range in order, on 127.0.0.1, then the same ports on
// 127.0.0.2, and so on for -sources addresses, then again from the start.
//
// Why not let the kernel pick: a server may keep a deleted allocation's
// 5-tuple for a moment (coturn does, for about a second), and the kernel
// hands a just-closed port out again often enough that, at thousands of
// allocations a second, a fresh socket regularly got an old 5-tuple and
// the answer 437 Allocation Mismatch. Going round the whole range, a
// 5-tuple comes back only after ports x addresses allocations. Each run
// starts at a random place in that cycle, so that consecutive runs rarely
// meet each other's last 5-tuples either.
type sources struct {
	next   atomic.Uint64
	lo, n  int
	addrs  []netip.Addr
	server netip.AddrPort
}

func newSources(server netip.AddrPort, count int) (*sources, error) {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			l, err1 := strconv.Atoi(f[0])
			h, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && l > 0 && h >= l && h < 65536 {
				lo, hi = l, h
			}
		}
	}
	if count < 1 || count > 250 {
		return nil, fmt.Errorf("-sources must be 1..250, got %d", count)
	}
	s := &sources{lo: lo, n: hi - lo + 1, server: server}
	for i := 1; i <= count; i++ {
		s.addrs = append(s.addrs, netip.AddrFrom4([4]byte{127, 0, 0, byte(i)}))
	}
	s.next.Store(uint64(mrand.IntN(s.n * count)))
	return s, nil
}

// dial opens a UDP socket from the next free local address, connected to
// the server. Addresses in use (by anyone) are skipped, at most 1000 in a
// row.
func (s *sources) dial() (*net.UDPConn, error) {
	raddr := net.UDPAddrFromAddrPort(s.server)
	for try := 0; try < 1000; try++ {
		k := int(s.next.Add(1) - 1)
		ip := s.addrs[(k/s.n)%len(s.addrs)]
		laddr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(s.lo+k%s.n)))
		c, err := net.DialUDP("udp", laddr, raddr)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, errors.New("no free local port in 1000 tries")
}
