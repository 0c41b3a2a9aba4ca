package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// maxBody bounds what is read of one answer's body.
const maxBody = 64 << 10

// legitClient is one legitimate user: its own source address, one
// keep-alive HTTP/1.1 connection, one request at a time. Not safe for
// concurrent use; one goroutine drives it.
type legitClient struct {
	src     *net.TCPAddr
	target  string
	req     []byte
	timeout time.Duration
	tm      *timer

	conn net.Conn
	br   *bufio.Reader
}

// newLegitClient returns a client for user i that connects from src to
// target.
func newLegitClient(i int, src netip.Addr, target, host string, timeout time.Duration) (*legitClient, error) {
	tm, err := newTimer()
	if err != nil {
		return nil, err
	}
	user, pass := legitUser(i)
	req := "GET /login HTTP/1.1\r\nHost: " + host + "\r\nAuthorization: " + basicAuth(user, pass) +
		"\r\nUser-Agent: fraudflood-legit\r\n\r\n"
	return &legitClient{
		src:     net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		target:  target,
		req:     []byte(req),
		timeout: timeout,
		tm:      tm,
	}, nil
}

func (c *legitClient) close() {
	c.drop()
	c.tm.close()
}

func (c *legitClient) drop() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// do sends one request and reads its answer, dialing first when there is
// no open connection. It reports whether the answer was 200; an error says
// why not when there was no answer.
func (c *legitClient) do(deadline time.Time) (bool, error) {
	if c.conn == nil {
		d := net.Dialer{LocalAddr: c.src, Deadline: deadline}
		conn, err := d.Dial("tcp", c.target)
		if err != nil {
			return false, fmt.Errorf("dial from %s: %w", c.src.IP, err)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		c.drop()
		return false, err
	}
	if _, err := c.conn.Write(c.req); err != nil {
		c.drop()
		return false, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.drop()
		return false, fmt.Errorf("read answer: %w", err)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody+1))
	resp.Body.Close()
	if err != nil || n > maxBody || resp.Close {
		c.drop()
		if err != nil {
			return false, fmt.Errorf("read body: %w", err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return true, nil
}

// clientResult is one client's share of a phase.
type clientResult struct {
	samples  []sample
	firstErr error
}

// run sends one request per due time (offsets from start), each as soon as
// it is due or, when the previous answer came later than that, at once.
// Nothing is sent after hardStop, and no request waits beyond it.
func (c *legitClient) run(ctx context.Context, start time.Time, due []time.Duration, hardStop time.Time) clientResult {
	res := clientResult{samples: make([]sample, 0, len(due))}
	for _, off := range due {
		at := start.Add(off)
		if err := c.waitUntil(ctx, at); err != nil {
			if res.firstErr == nil && !errors.Is(err, context.Canceled) {
				res.firstErr = err
			}
			break
		}
		sent := time.Now()
		if !sent.Before(hardStop) {
			break
		}
		deadline := sent.Add(c.timeout)
		if hardStop.Before(deadline) {
			deadline = hardStop
		}
		ok, err := c.do(deadline)
		done := time.Now()
		if err != nil && res.firstErr == nil {
			res.firstErr = err
		}
		res.samples = append(res.samples, sample{due: off, lat: done.Sub(at), lag: sent.Sub(at), ok: ok})
	}
	return res
}

// waitUntil sleeps until t, in steps of at most 100 ms so that a cancelled
// run stops promptly.
func (c *legitClient) waitUntil(ctx context.Context, t time.Time) error {
	for range 100_000 { // bounded: 100 ms steps cover the longest phase allowed
		if err := ctx.Err(); err != nil {
			return err
		}
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		if err := c.tm.sleep(min(d, 100*time.Millisecond)); err != nil {
			return err
		}
	}
	return errors.New("wait did not end")
}
