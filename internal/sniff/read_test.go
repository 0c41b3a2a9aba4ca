package sniff

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"testing/iotest"
	"time"
)

// countingReader counts Read calls.
type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// A slow client sending one byte per read is read exactly up to the
// deciding byte, and not one read further.
func TestReadSlowClient(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			src := bytes.NewReader([]byte(s.in))
			cr := &countingReader{r: iotest.OneByteReader(src)}
			buf := make([]byte, 64)
			n, p, err := Read(cr, buf)
			if err != nil || p != s.want || n != s.decide {
				t.Fatalf("Read = %d, %v, %v; want %d, %v, nil", n, p, err, s.decide, s.want)
			}
			if cr.calls != s.decide {
				t.Errorf("%d reads for %d bytes", cr.calls, s.decide)
			}
			if src.Len() != len(s.in)-s.decide {
				t.Errorf("%d bytes left unread, want %d", src.Len(), len(s.in)-s.decide)
			}
			if !bytes.Equal(buf[:n], []byte(s.in[:n])) {
				t.Errorf("buf[:n] = %q, want the bytes read", buf[:n])
			}
		})
	}
}

// A fast client's whole first flight arrives in one read; it is kept for
// replay.
func TestReadOneShot(t *testing.T) {
	for _, s := range samples {
		buf := make([]byte, 256)
		n, p, err := Read(bytes.NewReader([]byte(s.in)), buf)
		if err != nil || p != s.want || n != len(s.in) {
			t.Errorf("%s: Read = %d, %v, %v; want %d, %v, nil", s.name, n, p, err, len(s.in), s.want)
		}
	}
}

// dataErrReader returns data and err from the same call.
type dataErrReader struct {
	data string
	err  error
}

func (r *dataErrReader) Read(p []byte) (int, error) {
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, r.err
}

// badCountReader returns an impossible count.
type badCountReader struct{ n int }

func (r badCountReader) Read(p []byte) (int, error) { return len(p) + r.n, nil }

func TestReadErrors(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name  string
		r     io.Reader
		buf   int
		wantN int
		wantP Proto
		err   error
	}{
		{"reader fails at once", iotest.ErrReader(errBoom), 64, 0, Unknown, errBoom},
		{"eof before a decision", iotest.OneByteReader(bytes.NewReader([]byte("INV"))), 64, 3, Unknown, io.EOF},
		{"timeout before a decision", iotest.TimeoutReader(bytes.NewReader([]byte("OPTIONS * HT"))), 64, 12, Unknown, iotest.ErrTimeout},
		{"decided with eof in the same read", &dataErrReader{"GET / HTTP/1.0\r\n\r\n", io.EOF}, 64, 18, HTTP, io.EOF},
		{"undecided with error in the same read", &dataErrReader{"OPTIONS * HT", errBoom}, 64, 12, Unknown, errBoom},
		{"garbage", iotest.OneByteReader(bytes.NewReader([]byte("\x02\x01\x02"))), 64, 1, Unknown, nil},
		{"buffer full of keep-alives", bytes.NewReader(bytes.Repeat([]byte("\r\n"), 100)), 16, 16, Unknown, ErrTooLong},
		{"request line longer than buffer", iotest.OneByteReader(bytes.NewReader([]byte("OPTIONS sip:averylonguser@example.com SIP/2.0\r\n"))), 20, 20, Unknown, ErrTooLong},
		{"empty buffer", iotest.ErrReader(errBoom), 0, 0, Unknown, ErrTooLong},
		{"no progress", &dataErrReader{}, 64, 0, Unknown, io.ErrNoProgress},
		{"reader claims too much", badCountReader{1}, 64, 0, Unknown, errBadRead},
		{"reader claims negative", badCountReader{-65}, 64, 0, Unknown, errBadRead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, p, err := Read(tt.r, make([]byte, tt.buf))
			if n != tt.wantN || p != tt.wantP || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("Read = %d, %v, %v; want %d, %v, %v", n, p, err, tt.wantN, tt.wantP, tt.err)
			}
		})
	}
}

// TestReadLoopbackTLS sniffs a real crypto/tls client over TCP, then keeps
// reading until ServerName decides, as the listener will.
func TestReadLoopbackTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_ = tls.Client(c, &tls.Config{ServerName: "portal.example.com"}).Handshake()
	}()
	defer func() { <-done }()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // before <-done: the client's handshake ends
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	name, p := sniffTLSName(t, conn, make([]byte, 4096))
	if p != TLS || name != "portal.example.com" {
		t.Fatalf("got %v %q, want tls portal.example.com", p, name)
	}
}

// sniffTLSName classifies conn and, for TLS, reads on into buf until
// ServerName decides.
func sniffTLSName(t *testing.T, conn io.Reader, buf []byte) (string, Proto) {
	t.Helper()
	n, p, err := Read(conn, buf)
	if err != nil {
		t.Fatalf("Read: %v (%d bytes, %v)", err, n, p)
	}
	if p != TLS {
		return "", p
	}
	for n < len(buf) {
		name, ok, more, err := ServerName(buf[:n])
		if err != nil {
			t.Fatalf("ServerName: %v", err)
		}
		if !more {
			if !ok {
				return "", p
			}
			return string(name), p
		}
		m, err := conn.Read(buf[n:])
		n += m
		if err != nil {
			t.Fatalf("reading rest of ClientHello: %v", err)
		}
	}
	t.Fatalf("ClientHello longer than %d bytes", len(buf))
	return "", p
}
