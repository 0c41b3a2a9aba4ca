// Command tlsidle opens many idle TLS keep-alive connections to an HTTPS
// server, for measuring what idle connections cost the server (the pbxgate
// benchmarks read the server's VmRSS while they are held).
//
// Each connection completes a TLS handshake and one HTTP/1.1 request, reads
// the whole response, then stays open and silent. When every connection is
// open (or failed), tlsidle prints a line starting with IDLERESULT, creates
// the -ready file if given, and holds the connections until -hold elapses or
// it receives SIGINT/SIGTERM; then it closes them and exits.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "server host:port")
	sni := flag.String("sni", "localhost", "TLS server name and Host header")
	n := flag.Int("n", 10000, "connections to open")
	par := flag.Int("parallel", 32, "handshakes in flight at once")
	hold := flag.Duration("hold", 2*time.Minute, "how long to hold the connections at most")
	ready := flag.String("ready", "", "file to create once the connections are open")
	timeout := flag.Duration("timeout", 10*time.Second, "per-connection setup deadline")
	flag.Parse()
	if *addr == "" || *n <= 0 || *par <= 0 {
		log.Fatal("tlsidle: need -addr, -n > 0, -parallel > 0")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg := &tls.Config{
		ServerName:         *sni,
		InsecureSkipVerify: true, // throw-away self-signed benchmark certificate
		NextProtos:         []string{"http/1.1"},
		// The same key exchange OpenSSL 3.0 clients (wrk) negotiate, so the
		// servers compared do the same handshake work.
		CurvePreferences: []tls.CurveID{tls.X25519},
	}
	req := []byte("GET / HTTP/1.1\r\nHost: " + *sni + "\r\nUser-Agent: pbxgate-bench-tlsidle\r\n\r\n")

	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	next := atomic.Int64{}
	start := time.Now()
	var wg sync.WaitGroup
	for range *par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(*n) {
					return
				}
				c, err := open(*addr, cfg, req, *timeout)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	setup := time.Since(start)
	open := int64(*n) - failed.Load()
	fmt.Printf("%d of %d TLS connections open in %v (%.0f/s)\n", open, *n, setup.Round(time.Millisecond), float64(*n)/setup.Seconds())
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first error: %v\n", e)
	}
	fmt.Printf("IDLERESULT open=%d failed=%d setup_secs=%.2f\n", open, failed.Load(), setup.Seconds())
	os.Stdout.Sync()

	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(fmt.Sprintf("%d\n", open)), 0o644); err != nil {
			log.Printf("tlsidle: %v", err)
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

// open dials addr, completes the TLS handshake and one request, and returns
// the connection with its deadline cleared.
func open(addr string, cfg *tls.Config, req []byte, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	c.SetDeadline(time.Now().Add(timeout))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		c.Close()
		return nil, fmt.Errorf("response: status %d, close %v, body error %v", resp.StatusCode, resp.Close, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
