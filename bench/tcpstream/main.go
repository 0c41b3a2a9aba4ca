// Command tcpstream measures TCP relay throughput for the pbxgate benchmarks.
//
//	tcpstream serve  -addr 127.0.0.1:9000
//	tcpstream client -addr 127.0.0.1:9000 -bytes 4294967296 -dir down -streams 1
//
// The client speaks first (so a proxy that sniffs the first bytes sees
// them at once): it sends "SEND n\n" to have the server stream n bytes and
// close, or "RECV n\n" followed by n bytes, which the server counts and
// acknowledges with "OK\n". The client reports the payload rate over all
// streams, from its first byte sent to its last byte received, in a line
// starting with TCPRESULT. It is a benchmark tool, not a general server.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

const bufSize = 256 << 10

// maxStream bounds one stream's requested size (1 TiB).
const maxStream = 1 << 40

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen (serve) or connect (client) address")
	n := fs.Int64("bytes", 1<<30, "payload bytes per stream (client)")
	dir := fs.String("dir", "down", "down: server sends; up: client sends (client)")
	streams := fs.Int("streams", 1, "parallel connections (client)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long (client)")
	fs.Parse(os.Args[2:])

	switch os.Args[1] {
	case "serve":
		if err := serve(*addr); err != nil {
			log.Fatalf("tcpstream: %v", err)
		}
	case "client":
		if *n <= 0 || *n > maxStream || *streams <= 0 || (*dir != "down" && *dir != "up") {
			log.Fatal("tcpstream: need 0 < -bytes <= 1TiB, -streams > 0, -dir down|up")
		}
		if err := client(*addr, *n, *dir, *streams, *timeout); err != nil {
			log.Fatalf("tcpstream: %v", err)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcpstream serve|client [flags]")
	os.Exit(2)
}

func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Printf("tcpstream listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			if err := handle(c); err != nil {
				log.Printf("tcpstream: %v: %v", c.RemoteAddr(), err)
			}
		}()
	}
}

func handle(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, bufSize)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read command: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	verb, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n < 0 || n > maxStream {
		return fmt.Errorf("bad command %q", line)
	}
	switch verb {
	case "SEND":
		if err := writeN(c, n); err != nil {
			return err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			return tc.CloseWrite()
		}
		return nil
	case "RECV":
		got, err := readN(br, n)
		if err != nil {
			return fmt.Errorf("received %d of %d bytes: %w", got, n, err)
		}
		_, err = io.WriteString(c, "OK\n")
		return err
	default:
		return fmt.Errorf("bad command %q", line)
	}
}

// writeN writes n bytes of a fixed pattern to w.
func writeN(w io.Writer, n int64) error {
	buf := make([]byte, bufSize)
	for i := range buf {
		buf[i] = byte(i)
	}
	for n > 0 {
		chunk := buf[:min(int64(len(buf)), n)]
		m, err := w.Write(chunk)
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	return nil
}

// readN reads and drops up to n bytes from r through a large buffer (io.Copy
// to io.Discard would read in 8 KiB pieces). It returns io.EOF when r ends
// before n bytes.
func readN(r io.Reader, n int64) (int64, error) {
	buf := make([]byte, bufSize)
	var got int64
	for got < n {
		m, err := r.Read(buf[:min(int64(len(buf)), n-got)])
		got += int64(m)
		if err != nil {
			return got, err
		}
	}
	return got, nil
}

func client(addr string, n int64, dir string, streams int, timeout time.Duration) error {
	conns := make([]net.Conn, streams)
	for i := range conns {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return err
		}
		c.SetDeadline(time.Now().Add(timeout))
		conns[i] = c
	}
	start := time.Now()
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			errs[i] = stream(c, n, dir)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	total := n * int64(streams)
	mbps := float64(total) / 1e6 / elapsed.Seconds()
	fmt.Printf("%s %d stream(s) x %d bytes %s in %v: %.0f MB/s\n", addr, streams, n, dir, elapsed.Round(time.Millisecond), mbps)
	fmt.Printf("TCPRESULT mbps=%.1f bytes=%d secs=%.3f streams=%d dir=%s\n", mbps, total, elapsed.Seconds(), streams, dir)
	return nil
}

func stream(c net.Conn, n int64, dir string) error {
	switch dir {
	case "down":
		if _, err := fmt.Fprintf(c, "SEND %d\n", n); err != nil {
			return err
		}
		got, err := readN(c, n+1) // n bytes, then EOF
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("after %d bytes: %w", got, err)
		}
		if got != n {
			return fmt.Errorf("got %d bytes, want %d", got, n)
		}
		return nil
	default:
		if _, err := fmt.Fprintf(c, "RECV %d\n", n); err != nil {
			return err
		}
		if err := writeN(c, n); err != nil {
			return err
		}
		reply, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for acknowledgement: %w", err)
		}
		if reply != "OK\n" {
			return fmt.Errorf("unexpected acknowledgement %q", reply)
		}
		return nil
	}
}
