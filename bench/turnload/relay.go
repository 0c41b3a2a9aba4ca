package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"
)

// relay: relayed packets per second, closed loop. -allocs allocations each
// bind a channel to the tool's echo peer; each keeps -window ChannelData
// messages of -size payload bytes outstanding and sends one more for every
// echo it reads. Every echo crossed the server twice (client -> peer, peer
// -> client), and both crossings count: relayed = datagrams the peer
// received + datagrams the clients received back, in the window. A window
// with no echo for -stall counts as lost and is sent again.
type relay struct {
	allocs, window, size int
	stall                time.Duration
}

func newRelay(fs *flag.FlagSet) *relay {
	r := &relay{}
	fs.IntVar(&r.allocs, "allocs", 32, "allocations (client sockets), each with a channel to the echo peer")
	fs.IntVar(&r.window, "window", 16, "packets outstanding per allocation")
	fs.IntVar(&r.size, "size", 172, "payload bytes (172: G.711 20 ms + RTP header); a multiple of 4, >= 16")
	fs.DurationVar(&r.stall, "stall", 100*time.Millisecond, "an outstanding window with no echo for this long is counted lost and resent")
	return r
}

func (r *relay) check() error {
	if r.allocs < 1 || r.allocs > 10000 || r.window < 1 || r.window > 1024 || r.stall <= 0 {
		return errors.New("-allocs 1..10000, -window 1..1024, -stall > 0")
	}
	return checkSize(r.size)
}

func checkSize(n int) error {
	if n < payloadHeader || n%4 != 0 || n+channelHeader > maxDatagram {
		return fmt.Errorf("-size must be a multiple of 4 from %d to %d", payloadHeader, maxDatagram-channelHeader)
	}
	return nil
}

type relayCount struct {
	sent, rx, lost int64
	err            error
}

func (r *relay) run(ctx context.Context, c *common, res *result) error {
	m := &meter{pid: c.pid, srvCPUs: c.srvCPUs}
	p, err := startPeer(m, 0, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	t0 := time.Now()
	ss, retries, err := openSessions(ctx, c, 0, r.allocs, 32, p.addr)
	if err != nil {
		return err
	}
	setup := time.Since(t0)
	var drops dropCounter
	drops.start()
	counts := make([]relayCount, r.allocs)
	var wg sync.WaitGroup
	for i, s := range ss {
		wg.Go(func() { counts[i].err = r.loop(s, m, &counts[i]) })
	}
	err = m.measure(ctx, c.warmup, c.window)
	wg.Wait()
	dropped := drops.since(sockets(c, ss, p))
	released := closeSessions(ss, 32, true)
	if err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return fmt.Errorf("echo peer: %w", err)
	}
	var t relayCount
	for _, n := range counts {
		if n.err != nil {
			return n.err
		}
		t.sent += n.sent
		t.rx += n.rx
		t.lost += n.lost
	}
	if t.rx == 0 {
		return fmt.Errorf("no echo came back through the relay in the window (%d sent, the peer got %d)", t.sent, p.rx.Load())
	}
	relayed := p.rx.Load() + t.rx
	res.add("allocs", r.allocs)
	res.add("window", r.window)
	res.add("size", r.size)
	res.add("rate", rate(relayed, m.elapsed))
	res.add("echo_rate", rate(t.rx, m.elapsed))
	res.add("relayed", relayed)
	res.add("sent", t.sent)
	res.add("peer_rx", p.rx.Load())
	res.add("client_rx", t.rx)
	res.add("lost", t.lost)
	addDrops(res, dropped)
	res.add("setup_secs", setup)
	res.add("setup_retries", retries)
	res.add("release_failed", released)
	m.report(res, relayed)
	return nil
}

func (r *relay) loop(s *session, m *meter, n *relayCount) error {
	wr, err := newBatch(s.conn, r.window, channelHeader+r.size, false)
	if err != nil {
		return err
	}
	rd, err := newBatch(s.conn, r.window, maxDatagram, false)
	if err != nil {
		return err
	}
	win := newWindow(r.window, r.stall)
	fill := func(now time.Time) error {
		k := win.room()
		lost := 0
		for i := 0; i < k; i++ {
			seq, l := win.sent(now)
			lost += l
			b := wr.bufs[i]
			putChannelData(b, benchChannel, r.size)
			putPayload(b[channelHeader:], seq, 0)
			wr.lens[i] = channelHeader + r.size
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
		now := time.Now()
		if deadline.Sub(now) < r.stall*3/4 {
			deadline = now.Add(r.stall)
			if err := s.conn.SetReadDeadline(deadline); err != nil {
				return err
			}
		}
		k, err := rd.recv()
		if err != nil && !errors.Is(err, errDeadline) {
			return err
		}
		got := 0
		for i := 0; i < k; i++ {
			p, ok := channelData(rd.bufs[i][:rd.lens[i]], benchChannel)
			if !ok {
				continue
			}
			if seq, _, ok := readPayload(p); ok && win.answered(seq) {
				got++
			}
		}
		now = time.Now()
		lost := win.expire(now)
		if m.on.Load() {
			n.rx += int64(got)
			n.lost += int64(lost)
		}
		if err := fill(now); err != nil {
			return err
		}
	}
	return s.conn.SetReadDeadline(time.Time{})
}
