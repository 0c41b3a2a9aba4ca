//go:build linux

package httpproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	ca, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cb := <-ch
	if cb == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca.(*net.TCPConn), cb.(*net.TCPConn)
}

func newSockIO(t *testing.T, c *net.TCPConn) *sockIO {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	s := &sockIO{}
	s.bind(c, rc)
	if s.rc == nil {
		t.Fatal("bind left the sockIO unused")
	}
	return s
}

func TestSockIO(t *testing.T) {
	leakCheck(t)
	t.Run("round trip", func(t *testing.T) {
		a, b := tcpPair(t)
		s := newSockIO(t, a)
		if n, err := s.write([]byte("hello")); n != 5 || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
		got := make([]byte, 5)
		if _, err := io.ReadFull(b, got); err != nil || string(got) != "hello" {
			t.Fatalf("peer read %q %v", got, err)
		}
		if _, err := b.Write([]byte("world")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		n, err := s.read(buf)
		if err != nil || string(buf[:n]) != "world" {
			t.Fatalf("read %q %v", buf[:n], err)
		}
		if n, err := s.read(nil); n != 0 || err != nil {
			t.Fatalf("empty read: %d %v", n, err)
		}
		if n, err := s.write(nil); n != 0 || err != nil {
			t.Fatalf("empty write: %d %v", n, err)
		}
	})
	t.Run("large write waits for the reader", func(t *testing.T) {
		a, b := tcpPair(t)
		s := newSockIO(t, a)
		data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB, more than the socket buffers
		done := make(chan []byte, 1)
		go func() {
			got, _ := io.ReadAll(b)
			done <- got
		}()
		if n, err := s.write(data); n != len(data) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
		_ = a.CloseWrite()
		if got := <-done; !bytes.Equal(got, data) {
			t.Fatalf("peer got %d bytes, want %d", len(got), len(data))
		}
	})
	t.Run("deadline", func(t *testing.T) {
		a, _ := tcpPair(t)
		s := newSockIO(t, a)
		_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := s.read(make([]byte, 8))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past the deadline: %v, want a timeout", err)
		}
	})
	t.Run("EOF", func(t *testing.T) {
		a, b := tcpPair(t)
		s := newSockIO(t, a)
		_ = b.Close()
		if n, err := s.read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after peer close: %d %v, want EOF", n, err)
		}
	})
	t.Run("write to a reset peer fails", func(t *testing.T) {
		a, b := tcpPair(t)
		s := newSockIO(t, a)
		_ = b.SetLinger(0)
		_ = b.Close() // RST
		var err error
		for i := 0; i < 100 && err == nil; i++ {
			_, err = s.write([]byte("x"))
			if err == nil {
				time.Sleep(time.Millisecond)
			}
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" ||
			!(errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
			t.Fatalf("write to a reset peer: %v, want a write OpError with EPIPE or ECONNRESET", err)
		}
	})
	t.Run("close unblocks a read", func(t *testing.T) {
		a, _ := tcpPair(t)
		s := newSockIO(t, a)
		errc := make(chan error, 1)
		go func() {
			_, err := s.read(make([]byte, 8))
			errc <- err
		}()
		time.Sleep(10 * time.Millisecond) // let the read wait in the poller
		_ = a.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed conn: %v, want net.ErrClosed", err)
		}
	})
}
