package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"sync"
	"time"
)

// streams: -n concurrent G.711-like streams, open loop. Each stream is an
// allocation with a channel to the tool's echo peer; it sends a -size byte
// payload every -interval, and the peer sends it back, so the server
// relays a datagram each way per stream and interval, as in a call. The
// streams are spread evenly over the interval: one combined schedule, the
// k-th packet due at k x interval / n, whatever the server does.
//
// Measured: the packets scheduled in the window (after -warmup, for -duration)
// and which of them came back within -drain after the window (the load
// goes on meanwhile, so the last measured packets see the same server).
// The run passes when the loss is below -max-loss percent and the tool
// itself kept its schedule: at most 0.1 % of the measured packets left more
// than half an interval late (otherwise the harness, not the server, was
// the limit, and the line says so).
type streams struct {
	n        int
	interval time.Duration
	size     int
	drain    time.Duration
	maxLoss  float64
	conc     int
	quantum  time.Duration
}

func newStreams(fs *flag.FlagSet) *streams {
	s := &streams{}
	fs.IntVar(&s.n, "n", 100, "concurrent streams (allocations)")
	fs.DurationVar(&s.interval, "interval", 20*time.Millisecond, "packet interval per stream and direction")
	fs.IntVar(&s.size, "size", 172, "payload bytes (172: G.711 20 ms + RTP header); a multiple of 4, >= 16")
	fs.DurationVar(&s.drain, "drain", time.Second, "how long after the window an echo still counts")
	fs.Float64Var(&s.maxLoss, "max-loss", 0.1, "pass when the loss is below this percentage")
	fs.IntVar(&s.conc, "setup-concurrency", 64, "allocations being set up at once")
	fs.DurationVar(&s.quantum, "quantum", time.Millisecond, "shortest pacer sleep: packets falling due within it leave together")
	return s
}

func (s *streams) check() error {
	if s.n < 1 || s.n > 100000 || s.interval < time.Millisecond || s.drain < 0 || s.maxLoss < 0 || s.conc < 1 ||
		s.quantum < 0 || s.quantum > s.interval/4 {
		return errors.New("-n 1..100000, -interval >= 1ms, -drain and -max-loss not negative, -setup-concurrency >= 1, -quantum 0..interval/4")
	}
	return checkSize(s.size)
}

// streamRx is what one stream's receiver counted.
type streamRx struct {
	rx    int64 // measured echoes
	stray int64 // datagrams that were not this stream's echo
	err   error
}

// rttHist is shared by the receivers; each takes the lock once per batch.
type rttHist struct {
	mu sync.Mutex // guards h
	h  hist
}

func (s *streams) run(ctx context.Context, c *common, res *result) error {
	// The schedule, in packet numbers: j is due at start + j*interval/n.
	per := float64(s.interval) / float64(s.n)
	jStart := int64(float64(c.warmup) / per)
	jEnd := int64(float64(c.warmup+c.window) / per)
	jStop := int64(float64(c.warmup+c.window+s.drain) / per)

	m := &meter{pid: c.pid, srvCPUs: c.srvCPUs}
	p, err := startPeer(m, uint64(jStart), uint64(jEnd))
	if err != nil {
		return err
	}
	defer p.stop()
	t0 := time.Now()
	ss, retries, err := openSessions(ctx, c, 0, s.n, s.conc, p.addr)
	if err != nil {
		return err
	}
	setup := time.Since(t0)

	var drops dropCounter
	drops.start()
	rxs := make([]streamRx, s.n)
	var rtt rttHist
	var wg sync.WaitGroup
	start := time.Now()
	for i, x := range ss {
		wg.Go(func() { rxs[i].err = s.receive(x, i, start, jStart, jEnd, &rxs[i], &rtt) })
	}
	var snd sendStats
	var sendErr error
	var swg sync.WaitGroup
	swg.Go(func() { snd, sendErr = s.send(ctx, ss, start, per, jStart, jEnd, jStop) })
	merr := m.measure(ctx, c.warmup, c.window)
	swg.Wait()
	// The last measured packet was sent -drain ago, with load continuing;
	// stop the receivers.
	for _, x := range ss {
		x.conn.SetReadDeadline(time.Now())
	}
	wg.Wait()
	dropped := drops.since(sockets(c, ss, p))
	released := closeSessions(ss, s.conc, true)
	if err := errors.Join(merr, sendErr); err != nil {
		return err
	}
	if err := p.stop(); err != nil {
		return fmt.Errorf("echo peer: %w", err)
	}
	var rx, stray int64
	lossy := 0
	for i := range rxs {
		if rxs[i].err != nil {
			return rxs[i].err
		}
		rx += rxs[i].rx
		stray += rxs[i].stray
		if rxs[i].rx < expected(int64(i), int64(s.n), jStart, jEnd) {
			lossy++
		}
	}
	sent := jEnd - jStart
	lossPct := 100 * float64(sent-rx) / float64(sent)
	lateOK := snd.late*1000 <= sent
	pass := lossPct < s.maxLoss && lateOK && sent > 0
	res.add("n", s.n)
	res.add("pass", b2i(pass))
	res.add("loss_pct", fmt.Sprintf("%.4f", lossPct))
	res.add("sent", sent)
	res.add("peer_rx", p.rx.Load())
	res.add("echoed", rx)
	res.add("lossy_streams", lossy)
	res.add("pps", rate(2*sent, m.elapsed))
	res.add("rtt_p50_ms", float64(rtt.h.quantile(0.50).Microseconds())/1000)
	res.add("rtt_p99_ms", float64(rtt.h.quantile(0.99).Microseconds())/1000)
	res.add("rtt_max_ms", float64(rtt.h.quantile(1).Microseconds())/1000)
	res.add("late_sends", snd.late)
	res.add("max_lag_ms", float64(snd.maxLag.Microseconds())/1000)
	res.add("harness_late", b2i(!lateOK))
	res.add("stray", stray)
	addDrops(res, dropped)
	res.add("setup_secs", setup)
	res.add("setup_retries", retries)
	res.add("release_failed", released)
	m.report(res, 2*sent)
	return nil
}

// expected is how many of the measured packets [jStart, jEnd) belong to
// stream i of n (packet j belongs to stream j mod n).
func expected(i, n, jStart, jEnd int64) int64 {
	count := func(j int64) int64 { // packets of stream i in [0, j)
		if j <= i {
			return 0
		}
		return (j-i-1)/n + 1
	}
	return count(jEnd) - count(jStart)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

type sendStats struct {
	late   int64 // measured packets sent more than half an interval late
	maxLag time.Duration
}

// send runs the schedule from start until packet jStop, each packet to
// stream j mod n. It sleeps until the next packet is due and then sends
// every packet that has fallen due. It sleeps at least -quantum: waking
// for every packet (every 40 µs at 500 streams) cost the tool more CPU
// than sending them (a sleep and wake-up costs tens of µs on a virtual
// machine), and a millisecond of jitter is nothing next to a 20 ms packet
// interval.
func (s *streams) send(ctx context.Context, ss []*session, start time.Time, per float64, jStart, jEnd, jStop int64) (sendStats, error) {
	var st sendStats
	bufs := make([]*batch, len(ss))
	for i, x := range ss {
		b, err := newBatch(x.conn, 1, channelHeader+s.size, false)
		if err != nil {
			return st, err
		}
		putChannelData(b.bufs[0], benchChannel, s.size)
		b.lens[0] = channelHeader + s.size
		bufs[i] = b
	}
	n := int64(len(ss))
	lateAt := s.interval / 2
	for j := int64(0); j < jStop; {
		now := time.Since(start)
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		for ; j < jStop; j++ {
			due := time.Duration(float64(j) * per)
			if due > now {
				break
			}
			if j >= jStart && j < jEnd {
				lag := now - due
				st.maxLag = max(st.maxLag, lag)
				if lag > lateAt {
					st.late++
				}
			}
			b := bufs[j%n]
			putPayload(b.bufs[0][channelHeader:], uint64(j), int64(now))
			if err := b.send(1); err != nil {
				return st, err
			}
			now = time.Since(start)
		}
		if j < jStop {
			if wait := time.Duration(float64(j)*per) - time.Since(start); wait > 0 {
				time.Sleep(max(wait, s.quantum))
			}
		}
	}
	return st, nil
}

// receive counts stream i's echoes of measured packets until the socket's
// read deadline is set to the past.
func (s *streams) receive(x *session, i int, start time.Time, jStart, jEnd int64, out *streamRx, rtt *rttHist) error {
	rd, err := newBatch(x.conn, 8, maxDatagram, false)
	if err != nil {
		return err
	}
	n := int64(s.n)
	var local [8]time.Duration
	for {
		k, err := rd.recv()
		if err != nil {
			if errClosed(err) {
				return nil
			}
			return err
		}
		nr := 0
		for q := 0; q < k; q++ {
			p, ok := channelData(rd.bufs[q][:rd.lens[q]], benchChannel)
			seq, sentNs, ok2 := readPayload(p)
			if !ok || !ok2 || int64(seq)%n != int64(i) {
				out.stray++
				continue
			}
			if int64(seq) < jStart || int64(seq) >= jEnd {
				continue
			}
			out.rx++
			local[nr] = time.Duration(sentNs)
			nr++
		}
		if nr > 0 {
			now := time.Since(start)
			rtt.mu.Lock()
			for _, sent := range local[:nr] {
				rtt.h.record(now - sent)
			}
			rtt.mu.Unlock()
		}
	}
}
