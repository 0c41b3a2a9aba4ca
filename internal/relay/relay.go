// Package relay copies bytes both ways between two established connections,
// a client and a backend, until both directions are finished, the context is
// cancelled or the connection has been idle for too long.
//
// It propagates half-closes (EOF from one side becomes CloseWrite on the
// other), and when both connections are raw *net.TCPConn it hands them to
// io.Copy unwrapped so that Linux moves the bytes with splice(2) without
// copying them through user space. The idle timeout keeps that zero-copy
// path: instead of wrapping the connections to see each byte, it samples
// the kernel's per-socket byte counters (TCP_INFO).
//
// The package does not look at the bytes: it does not sniff, parse, replay
// already-read bytes, rate-limit or log. Callers that sniffed a prefix should
// forward it to the backend themselves and pass the raw sockets, so the rest
// of the connection can still be spliced.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options tune one Pipe.
type Options struct {
	// Idle closes the connection when neither direction moved a byte for
	// Idle. Zero or negative means no idle timeout.
	//
	// Precision: activity is sampled every Idle/4, so a connection that falls
	// silent is closed between Idle and 1.25×Idle after its last byte (plus
	// scheduling delay). "Moving a byte" means the kernel received or had
	// acknowledged a byte on either socket (raw TCP path), or a read or a
	// write call on either connection completed (other connections). A peer
	// that stops reading therefore makes the connection idle even while the
	// other side still has data queued for it.
	Idle time.Duration
}

// Stats counts the bytes written to each side.
type Stats struct {
	ClientToBackend int64 // bytes read from the client and written to the backend
	BackendToClient int64 // bytes read from the backend and written to the client
}

// Pipe copies client→backend and backend→client until both directions are
// done, ctx is cancelled or the idle timeout fires, then closes both
// connections. Pipe owns both connections from the moment it is called: it
// clears their deadlines and always closes them before returning.
//
// When one side's reader hits EOF, Pipe calls CloseWrite on the other side if
// that side has a CloseWrite() error method (*net.TCPConn, *tls.Conn, ...) and
// keeps copying the other direction (on a *tls.Conn that sends close_notify).
// A read or write error in either direction tears both down.
//
// Two raw *net.TCPConn are copied unwrapped (splice on Linux). With an idle
// timeout that needs the kernel's TCP_INFO byte counters (Linux 4.1+);
// elsewhere, and for any other connection type, Pipe copies through a
// pooled 32 KiB buffer per direction.
//
// The error is nil when both directions ended with EOF; ErrIdle after an idle
// timeout; ctx.Err() after cancellation; otherwise the first copy error,
// wrapped with its direction (for example a connection reset by a peer).
// Errors caused by Pipe's own teardown ("use of closed network connection")
// are not reported.
func Pipe(ctx context.Context, client, backend net.Conn, opts Options) (Stats, error) {
	p := &pipe{results: make(chan result, 2)}
	cTCP, cok := client.(*net.TCPConn)
	bTCP, bok := backend.(*net.TCPConn)
	var sample func() uint64
	if cok && bok {
		p.raw = true
		if opts.Idle > 0 {
			// The zero-copy path needs the kernel's counters to see
			// activity; without them fall back to counting copies.
			if _, ok := tcpProgress(cTCP); ok {
				sample = func() uint64 {
					a, _ := tcpProgress(cTCP)
					b, _ := tcpProgress(bTCP)
					return a + b
				}
			} else {
				p.raw = false
			}
		}
	}
	if !p.raw {
		sample = p.progress.Load
	}
	if p.raw {
		rawPipes.Add(1)
	}

	// A sniffing deadline left behind by the caller must not cut the relay.
	_ = client.SetDeadline(time.Time{})
	_ = backend.SetDeadline(time.Time{})

	go p.copy(clientToBackend, backend, client)
	go p.copy(backendToClient, client, backend)

	var (
		tick  <-chan time.Time
		clock idleClock
	)
	if opts.Idle > 0 {
		t := time.NewTicker(sampleInterval(opts.Idle))
		defer t.Stop()
		tick = t.C
		clock = idleClock{idle: opts.Idle, progress: sample(), since: time.Now()}
	}

	var (
		st      Stats
		retErr  error
		aborted bool
		done    = ctx.Done()
	)
	abort := func(cause error) {
		if aborted {
			return
		}
		aborted = true
		retErr = cause
		tick = nil
		done = nil
		abortConn(client)
		abortConn(backend)
	}
	for pending := 2; pending > 0; {
		select {
		case r := <-p.results:
			pending--
			if r.dir == clientToBackend {
				st.ClientToBackend = r.n
			} else {
				st.BackendToClient = r.n
			}
			if r.err != nil && !aborted {
				abort(fmt.Errorf("relay %s: %w", r.dir, r.err))
			}
		case <-done:
			abort(ctx.Err())
		case now := <-tick:
			if clock.expired(sample(), now) {
				abort(ErrIdle)
			}
		}
	}
	if !aborted {
		// Both directions ended cleanly; close errors carry no news.
		_ = client.Close()
		_ = backend.Close()
	}
	return st, retErr
}

// rawPipes counts Pipes that took the unwrapped io.Copy (splice) path; tests
// read it to prove the zero-copy path was chosen.
var rawPipes atomic.Int64

type direction uint8

const (
	clientToBackend direction = iota
	backendToClient
)

func (d direction) String() string {
	if d == clientToBackend {
		return "client->backend"
	}
	return "backend->client"
}

type result struct {
	dir direction
	n   int64
	err error
}

type pipe struct {
	raw      bool          // both sides are *net.TCPConn: plain io.Copy (splice)
	progress atomic.Uint64 // bytes read plus bytes written, counted path only
	results  chan result   // one result per direction, buffered
}

func (p *pipe) copy(d direction, dst, src net.Conn) {
	var (
		n   int64
		err error
	)
	if p.raw {
		// Unwrapped on purpose: (*net.TCPConn).ReadFrom splices on Linux.
		n, err = io.Copy(dst, src)
	} else {
		bp := bufPool.Get().(*[]byte)
		n, err = copyCounted(dst, src, *bp, &p.progress)
		bufPool.Put(bp)
	}
	if err == nil {
		// EOF from src: pass the half-close on. A failure here means dst
		// is already gone, which its own direction will report.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	p.results <- result{dir: d, n: n, err: err}
}

const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// maxEmptyReads bounds how often a misbehaving reader may return (0, nil)
// in a row before the copy gives up.
const maxEmptyReads = 100

// copyCounted copies src to dst through buf until EOF (returned as nil),
// adding every completed read and write to progress. It returns the bytes
// written to dst.
func copyCounted(dst io.Writer, src io.Reader, buf []byte, progress *atomic.Uint64) (int64, error) {
	var written int64
	empty := 0
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			empty = 0
			progress.Add(uint64(nr))
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nw > nr {
				nw = 0
				if werr == nil {
					werr = errors.New("invalid write result")
				}
			}
			written += int64(nw)
			progress.Add(uint64(nw))
			if werr != nil {
				return written, werr
			}
			if nw != nr {
				return written, io.ErrShortWrite
			}
		} else if rerr == nil {
			if empty++; empty >= maxEmptyReads {
				return written, io.ErrNoProgress
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return written, nil
			}
			return written, rerr
		}
	}
}

// abortConn unblocks every pending read and write on c and closes it,
// without waiting for a TLS close_notify that a stalled peer would never
// read.
func abortConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
	} else {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
	_ = c.Close()
}
