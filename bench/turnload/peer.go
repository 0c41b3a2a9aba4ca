package main

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// peer is the far end of the relays: a UDP socket on 127.0.0.1 that sends
// every datagram back to where it came from (the server's relay address),
// in batches of up to 64. It counts what it receives while the meter is on.
type peer struct {
	conn *net.UDPConn
	addr netip.AddrPort
	rx   atomic.Int64 // datagrams received in the window
	wg   sync.WaitGroup
	err  error

	// seqLo < seqHi: count the datagrams whose payload sequence number is
	// in [seqLo, seqHi) instead of those received while the meter is on
	// (the streams mode's measured packets).
	seqLo, seqHi uint64
}

// peerBuffer is the peer socket's receive and send buffer: the kernel
// default (208 KiB) holds about a millisecond of a fast relay's traffic,
// and the tool shares its CPU with the rest of the harness.
const peerBuffer = 4 << 20

// startPeer starts an echo peer counting what arrives while m is on, or
// the payloads numbered seqLo to seqHi-1 when seqLo < seqHi.
func startPeer(m *meter, seqLo, seqHi uint64) (*peer, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(peerBuffer)
	conn.SetWriteBuffer(peerBuffer)
	b, err := newBatch(conn, 64, maxDatagram, true)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &peer{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), seqLo: seqLo, seqHi: seqHi}
	p.wg.Go(func() { p.err = p.echo(b, m) })
	return p, nil
}

func (p *peer) echo(b *batch, m *meter) error {
	for {
		n, err := b.recv()
		if err != nil {
			if errClosed(err) {
				return nil
			}
			return err
		}
		switch {
		case p.seqLo < p.seqHi:
			k := 0
			for i := 0; i < n; i++ {
				if seq, _, ok := readPayload(b.bufs[i][:b.lens[i]]); ok && seq >= p.seqLo && seq < p.seqHi {
					k++
				}
			}
			p.rx.Add(int64(k))
		case m.on.Load():
			p.rx.Add(int64(n))
		}
		if err := b.send(n); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
	}
}

// stop closes the socket and waits for the echo loop; it returns the loop's
// error.
func (p *peer) stop() error {
	p.conn.Close()
	p.wg.Wait()
	return p.err
}

// sockets returns the addresses of the sockets of a run: the server's
// listener, the server's relays and the tool's own (clients and peer), for
// a dropCounter.
func sockets(c *common, ss []*session, p *peer) (listener, relays, tool []netip.AddrPort) {
	listener = []netip.AddrPort{c.server}
	for _, s := range ss {
		relays = append(relays, s.relay)
		tool = append(tool, s.conn.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	if p != nil {
		tool = append(tool, p.addr)
	}
	return listener, relays, tool
}

// addDrops adds a dropCounter's result for the groups of sockets.
func addDrops(res *result, d []uint64) {
	if len(d) != 3 {
		return
	}
	res.add("drops_server_listener", d[0])
	res.add("drops_server_relays", d[1])
	res.add("drops_tool", d[2])
}
