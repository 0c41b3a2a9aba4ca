//go:build linux

package main

import (
	"context"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"go.uber.org/goleak"
)

func TestRanges4(t *testing.T) {
	key := func(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }
	start := func(s string) nftables.SetElement { return nftables.SetElement{Key: key(s)} }
	end := func(s string) nftables.SetElement { return nftables.SetElement{Key: key(s), IntervalEnd: true} }
	addrs := []netip.Addr{attackerAddr(0), attackerAddr(1), attackerAddr(2), attackerAddr(3), attackerAddr(999),
		netip.MustParseAddr("::1")}
	tests := []struct {
		name    string
		els     []nftables.SetElement
		want    []range4
		covered int
	}{
		{"empty", nil, nil, 0},
		{"one address", []nftables.SetElement{start("127.2.0.2"), end("127.2.0.3")},
			[]range4{{0x7f020002, 0x7f020002}}, 1},
		// The kernel dumps in any order; adjacent ranges share a key.
		{"adjacent ranges, reverse order", []nftables.SetElement{end("127.2.0.4"), start("127.2.0.3"), end("127.2.0.3"), start("127.2.0.1")},
			[]range4{{0x7f020001, 0x7f020002}, {0x7f020003, 0x7f020003}}, 3},
		{"open end", []nftables.SetElement{start("127.2.3.232")}, []range4{{0x7f0203e8, 0xffffffff}}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ranges4(tc.els)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ranges %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("ranges %v, want %v", got, tc.want)
				}
			}
			if n := countIn(got, addrs); n != tc.covered {
				t.Errorf("countIn = %d, want %d", n, tc.covered)
			}
		})
	}
	if _, err := ranges4([]nftables.SetElement{{Key: []byte{1, 2, 3}}}); err == nil {
		t.Error("a 3-byte key was accepted")
	}
}

func TestSumCounters(t *testing.T) {
	rules := []*nftables.Rule{
		{Exprs: []expr.Any{&expr.Meta{}, &expr.Counter{Packets: 7, Bytes: 420}, &expr.Verdict{Kind: expr.VerdictDrop}}},
		{Exprs: []expr.Any{&expr.Counter{Packets: 5}}},
	}
	if n, err := sumCounters(rules); err != nil || n != 12 {
		t.Errorf("sumCounters = %d, %v; want 12", n, err)
	}
	if _, err := sumCounters([]*nftables.Rule{{Exprs: []expr.Any{&expr.Verdict{}}}}); err == nil {
		t.Error("rules without a counter: no error")
	}
}

// TestConnectTimeout: an attacker whose SYNs go unanswered gives up after
// its connect timeout and counts a connect timeout, not an answer or a
// refusal. A listener whose accept queue is full drops SYNs, as the kernel
// blacklist does.
func TestConnectTimeout(t *testing.T) {
	defer goleak.VerifyNone(t)
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // never accepted: one connection fills the queue
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*syscall.SockaddrInet4).Port)).String()
	filler, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()

	a := &attacker{idx: 1, src: net.TCPAddrFromAddrPort(netip.AddrPortFrom(attackerAddr(1), 0)),
		target: target, host: "portal.bench", timeout: 5 * time.Second, connTimeout: 200 * time.Millisecond, attempts: 2}
	start := time.Now()
	st := a.run(context.Background(), start, start.Add(30*time.Second))
	took := time.Since(start)
	if st.attempts != 2 || st.connTimeouts != 2 || st.refused != 0 || st.timeouts != 0 || st.firstRefusal != 0 {
		t.Errorf("tally %+v: want 2 connect timeouts", st)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Errorf("2 attempts took %v, want about 2 x 200 ms", took)
	}

	// The end of the phase cuts a handshake short: unfinished, not a
	// timeout.
	a.connTimeout = 5 * time.Second
	start = time.Now()
	st = a.run(context.Background(), start, start.Add(150*time.Millisecond))
	if st.attempts != 1 || st.unfinished != 1 || st.connTimeouts != 0 {
		t.Errorf("tally %+v: want 1 attempt cut by the phase end", st)
	}
}
