package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/pbxgate/pbxgate/internal/siptest"
)

// backend is the memory step's PBX stand-in: on one address, UDP and TCP,
// it answers every SIP request but ACK with 200 OK, so that pbxgate's flows
// and connections are established. It keeps no state.
type backend struct {
	pc net.PacketConn
	ln net.Listener

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// listenBackend listens on addr for UDP and TCP. With port 0 it tries a
// few ports until one is free for both.
func listenBackend(addr string) (*backend, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return &backend{pc: pc, ln: ln, conns: map[net.Conn]struct{}{}}, nil
		}
		pc.Close()
		if port != "0" || attempt >= 20 {
			return nil, err
		}
	}
}

// serve answers until ctx is done, then closes everything it holds.
func (b *backend) serve(ctx context.Context) {
	b.wg.Add(2)
	go func() {
		defer b.wg.Done()
		b.serveUDP()
	}()
	go func() {
		defer b.wg.Done()
		b.acceptTCP()
	}()
	<-ctx.Done()
	b.pc.Close()
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *backend) serveUDP() { siptest.ServeUDP(b.pc, siptest.OK) }

func (b *backend) acceptTCP() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // EMFILE and the like: the client sees a failure
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			siptest.ServeStream(c, c, siptest.OK)
			b.mu.Lock()
			delete(b.conns, c)
			b.mu.Unlock()
			c.Close()
		}()
	}
}

// runBackend is "siputil backend -addr A": serve until SIGINT/SIGTERM.
func runBackend(ctx context.Context, w io.Writer, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:5090", "UDP and TCP address to answer on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseNoFile(1 << 20); err != nil {
		return err
	}
	b, err := listenBackend(*addr)
	if err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	fmt.Fprintf(w, "BACKEND ready addr=%s\n", b.pc.LocalAddr())
	b.serve(ctx)
	return nil
}
