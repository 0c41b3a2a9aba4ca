//go:build !linux

package main

import (
	"errors"
	"net"
	"net/netip"
)

// batch is the portable stand-in for the Linux recvmmsg/sendmmsg batch: one
// datagram per system call. The numbers bench/turn.sh reports come from
// Linux; this keeps the tool building elsewhere.
type batch struct {
	c     *net.UDPConn
	bufs  [][]byte
	lens  []int
	names []netip.AddrPort
	named bool
}

func newBatch(c *net.UDPConn, n, size int, named bool) (*batch, error) {
	b := &batch{c: c, bufs: make([][]byte, n), lens: make([]int, n), names: make([]netip.AddrPort, n), named: named}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, size)
	}
	return b, nil
}

func (b *batch) recv() (int, error) {
	n, from, err := b.c.ReadFromUDPAddrPort(b.bufs[0])
	if err != nil {
		return 0, err
	}
	b.lens[0], b.names[0] = n, from
	return 1, nil
}

func (b *batch) from(i int) netip.AddrPort { return b.names[i] }

func (b *batch) send(n int) error {
	for i := 0; i < n; i++ {
		var err error
		if b.named {
			_, err = b.c.WriteToUDPAddrPort(b.bufs[i][:b.lens[i]], b.names[i])
		} else {
			_, err = b.c.Write(b.bufs[i][:b.lens[i]])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func errClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, errDeadline)
}
