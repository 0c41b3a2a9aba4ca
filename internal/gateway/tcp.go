package gateway

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/listen"
	"github.com/pbxgate/pbxgate/internal/relay"
)

// tcpForwarder relays connections of no recognised protocol to one backend.
// Plain on both sides, it writes the sniffed bytes and then lets the kernel
// splice the raw sockets.
type tcpForwarder struct {
	listener, service string
	dial              func(context.Context) (net.Conn, error)
	idle              time.Duration
	events            event.Sink
}

// peeked is what listen hands to handlers for plaintext connections.
type peeked interface {
	Peeked() []byte
	Raw() *net.TCPConn
}

func (f *tcpForwarder) ServeConn(ctx context.Context, c net.Conn, src netip.Addr) error {
	defer c.Close()
	bc, err := f.dial(ctx)
	if err != nil {
		f.events.Emit(event.Event{
			Time: time.Now(), Kind: event.BackendUnreachable, Source: src, Listener: f.listener,
			Service: f.service, Proto: "tcp", Reason: event.ReasonDial, Detail: err.Error(),
		})
		return err
	}
	listen.Settle(c) // routed and connected: the relay costs the kernel
	client := c
	if p, ok := c.(peeked); ok && p.Raw() != nil {
		if _, isTCP := bc.(*net.TCPConn); isTCP {
			if _, err := bc.Write(p.Peeked()); err != nil {
				bc.Close()
				return fmt.Errorf("write to backend: %w", err)
			}
			client = p.Raw()
		}
	}
	_, err = relay.Pipe(ctx, client, bc, relay.Options{Idle: f.idle})
	return err
}
