package httpproxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
)

// fastOrigin is a minimal keep-alive HTTP/1.1 origin, like bench/backend's
// fast mode: it answers every request head (no bodies) with a fixed 2-byte
// response, pipelining included.
func fastOrigin(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	done := make(chan struct{})
	conns := make(chan net.Conn, 1024)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go func() {
				defer c.Close()
				buf := make([]byte, 16<<10)
				out := make([]byte, 0, 16<<10)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if n == 0 || err != nil {
						return
					}
					have += n
					out = out[:0]
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						out = append(out, resp...)
						have = copy(buf, buf[i+4:have])
					}
					if len(out) > 0 {
						if _, err := c.Write(out); err != nil {
							return
						}
					}
					if have == len(buf) {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// benchClient sends GET requests one at a time on one keep-alive
// connection and reads each answer.
type benchClient struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newBenchClient(tb testing.TB, addr string) *benchClient {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return &benchClient{c: c, br: bufio.NewReaderSize(c, 16<<10),
		req: []byte("GET /app/provision/00aabbccddee.cfg HTTP/1.1\r\nHost: prov.example.com\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")}
}

// do sends one request and returns the status code.
func (bc *benchClient) do() (int, error) {
	if _, err := bc.c.Write(bc.req); err != nil {
		return 0, err
	}
	status, cl := 0, -1
	for first := true; ; first = false {
		line, err := bc.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if first {
			if len(line) < 12 {
				return 0, io.ErrUnexpectedEOF
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && (string(line[:16]) == "Content-Length: " || string(line[:16]) == "content-length: ") {
			cl, _ = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
		}
	}
	if cl > 0 {
		if _, err := bc.br.Discard(cl); err != nil {
			return 0, err
		}
	}
	return status, nil
}

// BenchmarkProxy compares the lean path and net/http with a loopback
// origin: one request at a time on one keep-alive connection.
func BenchmarkProxy(b *testing.B) {
	origin := fastOrigin(b)
	rules := benchRules(b)
	for _, bc := range []struct {
		name    string
		netHTTP bool
	}{{"lean", false}, {"nethttp", true}} {
		b.Run(bc.name, func(b *testing.B) {
			env := startProxy(b, modePlain, Options{Services: []Service{
				{Name: "prov", Hosts: []string{"prov.example.com"}, Backend: Backend{Address: origin}, Rules: rules},
			}}, ServerOptions{NetHTTPOnly: bc.netHTTP})
			cl := newBenchClient(b, env.addr)
			if st, err := cl.do(); err != nil || st != 200 {
				b.Fatalf("warm-up: %d %v", st, err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if st, err := cl.do(); err != nil || st != 200 {
					b.Fatalf("%d %v", st, err)
				}
			}
		})
	}
}
