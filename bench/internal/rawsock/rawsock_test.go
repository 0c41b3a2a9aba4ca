package rawsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// pair returns a wrapped client and the plain server side of a loopback TCP
// connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	client = Wrap(c)
	t.Cleanup(func() { client.Close(); s.Close() })
	return client, s
}

func TestWrapKind(t *testing.T) {
	c, _ := pair(t)
	_, raw := c.(*conn)
	if raw != (runtime.GOOS == "linux") {
		t.Fatalf("Wrap gave %T on %s", c, runtime.GOOS)
	}
	// Not a TCP connection: unchanged.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a non-TCP connection")
	}
}

func TestReadWrite(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{"small", 5},
		{"larger-than-socket-buffers", 8 << 20}, // Write must wait for room
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := pair(t)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			s.SetDeadline(time.Now().Add(10 * time.Second))
			want := bytes.Repeat([]byte("abcdefg"), tc.size/7+1)[:tc.size]

			// Client to server while the server echoes back: reads and
			// writes on the wrapped side run concurrently.
			echoed := make(chan error, 1)
			go func() {
				_, err := io.CopyN(s, s, int64(len(want)))
				echoed <- err
			}()
			wrote := make(chan error, 1)
			go func() {
				n, err := c.Write(want)
				if err == nil && n != len(want) {
					err = io.ErrShortWrite
				}
				wrote <- err
			}()
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := <-wrote; err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := <-echoed; err != nil {
				t.Fatalf("echo: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("echoed bytes differ")
			}
			if n, err := c.Read(nil); n != 0 || err != nil {
				t.Fatalf("empty read: %d, %v", n, err)
			}
		})
	}
}

func TestEOFAndErrors(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		c, s := pair(t)
		s.Write([]byte("x"))
		s.Close()
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "x" {
			t.Fatalf("ReadAll: %q, %v", b, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c, _ := pair(t)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past deadline: %v, want os.ErrDeadlineExceeded", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past deadline: %v is not a net.Error timeout", err)
		}
	})
	t.Run("close-unblocks-read", func(t *testing.T) {
		c, _ := pair(t)
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 1))
			done <- err
		}()
		time.Sleep(10 * time.Millisecond) // let the read wait (not needed for correctness)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock Read")
		}
	})
	t.Run("write-to-closed-peer", func(t *testing.T) {
		c, s := pair(t)
		s.Close()
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		var err error
		for i := 0; i < 100 && err == nil; i++ { // the first writes may still succeed
			_, err = c.Write(make([]byte, 64<<10))
		}
		if err == nil {
			t.Fatal("100 writes to a closed peer all succeeded")
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" {
			t.Fatalf("write error %v, want a *net.OpError for write", err)
		}
	})
}

func TestNoAllocs(t *testing.T) {
	c, s := pair(t)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s.SetDeadline(time.Now().Add(10 * time.Second))
	out := []byte("ping")
	in := make([]byte, 16)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, in[:len(out)]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(out); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, in[:len(out)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round trip, want 0", allocs)
	}
}
