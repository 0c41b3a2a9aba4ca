// Package siptest has the PBX stand-ins of Go tests: loops that read SIP
// messages from a stream, a UDP socket or a WebSocket and send back what
// an answer function returns. Tests of the SIP edge and of the gateway
// share them; the end-to-end tests use sipp instead.
package siptest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/pbxgate/pbxgate/internal/sip"
)

// Answer returns the reply to one message, or nil for none.
type Answer func(msg []byte) []byte

// OK answers 200 to every request but ACK; responses get nothing.
func OK(b []byte) []byte {
	var m sip.Message
	if sip.Parse(b, &m) != nil || !m.Request || string(m.Method) == "ACK" {
		return nil
	}
	out, err := sip.AppendResponse(nil, b, &m, 200, "", []byte("pbxtag"))
	if err != nil {
		return nil
	}
	return out
}

// ServeStream frames the messages read from r (keep-alives skipped) and
// writes answer's replies to w until r fails or sends what is not SIP.
func ServeStream(r io.Reader, w io.Writer, answer Answer) {
	var fr sip.Framer
	var buf []byte
	tmp := make([]byte, 4096)
	for {
		n, err := r.Read(tmp)
		if err != nil {
			return
		}
		buf = append(buf, tmp[:n]...)
		for {
			k, ka, err := fr.Next(buf, nil)
			if err != nil {
				return
			}
			if k == 0 {
				break
			}
			if !ka {
				if out := answer(buf[:k]); out != nil {
					w.Write(out)
				}
			}
			buf = buf[k:]
		}
	}
}

// ReadMessage reads the next SIP message from r, keep-alives skipped,
// framed as sip.Framer frames it; it reads no byte past the message.
func ReadMessage(r *bufio.Reader) ([]byte, error) {
	var fr sip.Framer
	var buf []byte
	for {
		b, err := r.ReadByte()
		if err != nil {
			if len(buf) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		buf = append(buf, b)
		n, ka, err := fr.Next(buf, nil)
		switch {
		case err != nil:
			return nil, err
		case n > 0 && ka:
			buf = buf[n:]
		case n > 0:
			return buf, nil
		}
	}
}

// ServeUDP answers the datagrams read from pc until it is closed. Other
// read errors (ICMP port unreachable reported on Linux) are skipped.
func ServeUDP(pc net.PacketConn, answer Answer) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if out := answer(buf[:n]); out != nil {
			pc.WriteTo(out, from)
		}
	}
}

// WebSocket is a PBX's SIP WebSocket endpoint (subprotocol "sip"): one
// message per WebSocket message, answered in a text message.
func WebSocket(answer Answer) http.Handler {
	up := websocket.Upgrader{Subprotocols: []string{"sip"}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				return
			}
			if out := answer(b); out != nil {
				c.WriteMessage(websocket.TextMessage, out)
			}
		}
	})
}

// Serve accepts connections on ln and runs handle on a goroutine of its
// own for each, until ln is closed. stop closes ln and waits for every
// handler to return (handlers must return once their connection ends).
func Serve(ln net.Listener, handle func(net.Conn)) (stop func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(c)
			}()
		}
	}()
	return func() { ln.Close(); wg.Wait() }
}
