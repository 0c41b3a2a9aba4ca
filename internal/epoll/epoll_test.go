//go:build linux

package epoll

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWaitReportsKeys: a readable socket is reported by its 64-bit key;
// Close ends a Wait in progress.
func TestWaitReportsKeys(t *testing.T) {
	s, err := New("test-epoll")
	if err != nil {
		t.Fatal(err)
	}
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	const key = 1<<40 | 7
	if err := s.Ctl(unix.EPOLL_CTL_ADD, rc, unix.EPOLLIN, key); err != nil {
		t.Fatal(err)
	}
	b, err := net.DialUDP("udp", nil, a.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Write([]byte("x"))
	evs, err := s.Wait()
	if err != nil || len(evs) != 1 || Key(evs[0]) != key || evs[0].Events&unix.EPOLLIN == 0 {
		t.Fatalf("Wait = %v, %v; want one EPOLLIN for key %d", evs, err, uint64(key))
	}
	if err := s.Ctl(unix.EPOLL_CTL_DEL, rc, 0, key); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Wait()
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Wait after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end Wait")
	}
}
