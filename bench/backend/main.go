// Command backend is the HTTP origin server of the pbxgate benchmarks: it
// answers every request with a tiny fixed "ok" response and keeps connections
// alive.
//
// It has two modes. "fast" (the default) is a minimal HTTP/1.1 responder that
// reads request heads and writes a prebuilt response per head, so the origin
// costs as little CPU as possible and the proxy under test, not the origin, is
// the bottleneck. It understands only requests without a body (GET/HEAD, or a
// zero Content-Length), which is all the benchmark sends; a request announcing
// a body is answered 400 and the connection closed. "std" uses net/http for
// comparison.
//
// It is a benchmark tool, not a general-purpose server.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/pbxgate/pbxgate/bench/internal/rawsock"
)

const body = "ok"

// response is the fixed answer of the fast mode: small headers, two-byte body.
var response = []byte("HTTP/1.1 200 OK\r\n" +
	"Content-Type: text/plain\r\n" +
	"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
	"\r\n" + body)

var badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	mode := flag.String("mode", "fast", "fast (minimal HTTP/1.1 responder) or std (net/http)")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("backend: %v", err)
	}
	fmt.Printf("backend listening on %s mode=%s\n", ln.Addr(), *mode)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()

	switch *mode {
	case "fast":
		err = serveFast(ln)
	case "std":
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				io.WriteString(w, body)
			}),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       5 * time.Minute,
		}
		err = srv.Serve(ln)
	default:
		log.Fatalf("backend: unknown mode %q", *mode)
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("backend: %v", err)
	}
}

func serveFast(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go handleFast(c)
	}
}

// maxHead bounds one request head; a longer head closes the connection.
const maxHead = 64 << 10

// handleFast answers every request head on c until the peer closes. Request
// heads may arrive split across reads or pipelined several per read.
func handleFast(c net.Conn) {
	defer c.Close()
	// Raw non-blocking socket calls: with GOMAXPROCS=1 on a shared CPU,
	// net.Conn's scheduler bookkeeping cost more than the HTTP (see rawsock).
	c = rawsock.Wrap(c)
	buf := make([]byte, 0, 16<<10)
	out := make([]byte, 0, 16<<10)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxHead {
				return
			}
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		out = out[:0]
		for {
			end := bytes.Index(buf, []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			head := buf[:end+4]
			if hasBody(head) {
				c.Write(append(out, badRequest...))
				return
			}
			out = append(out, response...)
			buf = buf[:copy(buf, buf[end+4:])]
		}
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hasBody reports whether a request head announces a body (a non-zero
// Content-Length or any Transfer-Encoding). Header names are matched
// case-insensitively. It does not allocate.
func hasBody(head []byte) bool {
	for len(head) > 0 {
		var line []byte
		line, head, _ = bytes.Cut(head, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return true
		case bytes.EqualFold(name, []byte("Content-Length")):
			if string(value) != "0" {
				return true
			}
		}
	}
	return false
}
