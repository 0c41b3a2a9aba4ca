package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// mem: the server's memory per allocation. It reads the server's VmRSS
// idle, then opens allocations (each with a channel to the echo peer, as a
// call has) up to each of -levels in turn and reads VmRSS after -settle at
// each; then it ends them all. kb_per_1000 is (RSS at the level - idle RSS)
// / level x 1000.
type mem struct {
	levels  []int
	settle  time.Duration
	conc    int
	channel bool
}

func newMem(fs *flag.FlagSet) *mem {
	m := &mem{}
	fs.Func("levels", "allocation counts to read the memory at, ascending, comma-separated (default 1000,5000)", func(s string) error {
		m.levels = m.levels[:0]
		for f := range strings.SplitSeq(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("bad level %q", f)
			}
			m.levels = append(m.levels, n)
		}
		return nil
	})
	fs.DurationVar(&m.settle, "settle", time.Second, "wait before each reading")
	fs.IntVar(&m.conc, "setup-concurrency", 32, "allocations being set up at once")
	fs.BoolVar(&m.channel, "channel", true, "bind a channel to the echo peer on every allocation")
	m.levels = []int{1000, 5000}
	return m
}

func (m *mem) check() error {
	if len(m.levels) == 0 || !slices.IsSorted(m.levels) || m.levels[len(m.levels)-1] > 200000 || m.conc < 1 || m.settle < 0 {
		return errors.New("-levels ascending, at most 200000; -setup-concurrency >= 1")
	}
	return nil
}

func (m *mem) run(ctx context.Context, c *common, res *result) error {
	if c.pid <= 0 {
		return errors.New("needs -pid")
	}
	mt := &meter{}
	var peer netip.AddrPort
	if m.channel {
		p, err := startPeer(mt, 0, 0)
		if err != nil {
			return err
		}
		defer p.stop()
		peer = p.addr
	}
	if err := sleepCtx(ctx, m.settle); err != nil {
		return err
	}
	idle, err := readMem(c.pid)
	if err != nil {
		return err
	}
	res.add("rss_idle_kb", idle.rssKB)
	var all []*session
	defer func() { closeSessions(all, m.conc, true) }()
	var retries int64
	t0 := time.Now()
	for _, level := range m.levels {
		ss, r, err := openSessions(ctx, c, len(all), level-len(all), m.conc, peer)
		retries += r
		if err != nil {
			return fmt.Errorf("at %d allocations: %w", len(all), err)
		}
		all = append(all, ss...)
		setup := time.Since(t0)
		if err := sleepCtx(ctx, m.settle); err != nil {
			return err
		}
		got, err := readMem(c.pid)
		if err != nil {
			return err
		}
		l := strconv.Itoa(level)
		res.add("rss_"+l+"_kb", got.rssKB)
		res.add("hwm_"+l+"_kb", got.hwmKB)
		res.add("kb_per_1000_at_"+l, float64(got.rssKB-idle.rssKB)/float64(level)*1000)
		res.add("setup_secs_"+l, setup)
	}
	res.add("levels", strings.Trim(strings.Join(strings.Fields(fmt.Sprint(m.levels)), ","), "[]"))
	res.add("setup_retries", retries)
	failed := closeSessions(all, m.conc, true)
	all = nil
	res.add("release_failed", failed)
	return nil
}
