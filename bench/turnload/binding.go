package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// binding: STUN Binding requests over UDP, closed loop. Each of -sockets
// connected sockets keeps -window requests outstanding: it sends a batch,
// and for every answer it reads sends one more request. An answer that has
// not come within -stall counts as lost and the socket refills its window.
type binding struct {
	sockets, window int
	stall           time.Duration
}

func newBinding(fs *flag.FlagSet) *binding {
	b := &binding{}
	fs.IntVar(&b.sockets, "sockets", 16, "client sockets")
	fs.IntVar(&b.window, "window", 32, "requests outstanding per socket")
	fs.DurationVar(&b.stall, "stall", 100*time.Millisecond, "an outstanding window with no answer for this long is counted lost and resent")
	return b
}

func (b *binding) check() error {
	if b.sockets < 1 || b.sockets > 4096 || b.window < 1 || b.window > 1024 || b.stall <= 0 {
		return errors.New("-sockets 1..4096, -window 1..1024, -stall > 0")
	}
	return nil
}

type bindingCount struct {
	sent, ok, lost, other int64 // in the window
	err                   error
}

func (b *binding) run(ctx context.Context, c *common, res *result) error {
	conns := make([]*net.UDPConn, b.sockets)
	for i := range conns {
		conn, err := c.src.dial()
		if err != nil {
			closeAll(conns)
			return err
		}
		conns[i] = conn
	}
	defer closeAll(conns)
	m := &meter{pid: c.pid, srvCPUs: c.srvCPUs}
	var drops dropCounter
	drops.start()
	counts := make([]bindingCount, b.sockets)
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Go(func() { counts[i].err = b.loop(conn, uint32(i), m, &counts[i]) })
	}
	err := m.measure(ctx, c.warmup, c.window)
	wg.Wait()
	if err != nil {
		return err
	}
	var tool []netip.AddrPort
	for _, c := range conns {
		tool = append(tool, c.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	dropped := drops.since([]netip.AddrPort{c.server}, nil, tool)
	var t bindingCount
	for _, n := range counts {
		if n.err != nil {
			return n.err
		}
		t.sent += n.sent
		t.ok += n.ok
		t.lost += n.lost
		t.other += n.other
	}
	if t.ok == 0 {
		return fmt.Errorf("no Binding answer in the window (%d sent)", t.sent)
	}
	res.add("sockets", b.sockets)
	res.add("window", b.window)
	res.add("rate", rate(t.ok, m.elapsed))
	res.add("ok", t.ok)
	res.add("sent", t.sent)
	res.add("lost", t.lost)
	res.add("other", t.other)
	if len(dropped) == 3 {
		res.add("drops_server_listener", dropped[0])
		res.add("drops_tool", dropped[2])
	}
	m.report(res, t.ok)
	return nil
}

// loop is one socket's closed loop until the meter is done.
func (b *binding) loop(conn *net.UDPConn, idx uint32, m *meter, n *bindingCount) error {
	wr, err := newBatch(conn, b.window, 20, false)
	if err != nil {
		return err
	}
	rd, err := newBatch(conn, b.window, 512, false)
	if err != nil {
		return err
	}
	win := newWindow(b.window, b.stall)
	var id [12]byte
	binary.BigEndian.PutUint32(id[:4], idx)
	fill := func(now time.Time) error {
		k := win.room()
		lost := 0
		for i := 0; i < k; i++ {
			seq, l := win.sent(now)
			lost += l
			binary.BigEndian.PutUint64(id[4:], seq)
			wr.lens[i] = bindingRequest(wr.bufs[i], id)
		}
		if m.on.Load() {
			n.sent += int64(k)
			n.lost += int64(lost)
		}
		if k == 0 {
			return nil
		}
		return wr.send(k)
	}
	if err := fill(time.Now()); err != nil {
		return err
	}
	var deadline time.Time
	for !m.done.Load() {
		// The read deadline wakes the loop when nothing comes back for a
		// stall time; moving it costs a timer update, so it moves at most
		// every quarter of that.
		now := time.Now()
		if deadline.Sub(now) < b.stall*3/4 {
			deadline = now.Add(b.stall)
			if err := conn.SetReadDeadline(deadline); err != nil {
				return err
			}
		}
		k, err := rd.recv()
		if err != nil && !errors.Is(err, errDeadline) {
			return err
		}
		got := 0
		for i := 0; i < k; i++ {
			rid, ok := isBindingSuccess(rd.bufs[i][:rd.lens[i]])
			if !ok || binary.BigEndian.Uint32(rid[:4]) != idx {
				if m.on.Load() {
					n.other++
				}
				continue
			}
			if win.answered(binary.BigEndian.Uint64(rid[4:])) {
				got++
			}
		}
		now = time.Now()
		lost := win.expire(now)
		if m.on.Load() {
			n.ok += int64(got)
			n.lost += int64(lost)
		}
		if err := fill(now); err != nil {
			return err
		}
	}
	return nil
}

func closeAll(conns []*net.UDPConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
