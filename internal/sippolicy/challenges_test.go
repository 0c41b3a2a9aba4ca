package sippolicy

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func newChallenges(t testing.TB, c ChallengesConfig) *Challenges {
	t.Helper()
	ch, err := NewChallenges(c)
	if err != nil {
		t.Fatalf("NewChallenges: %v", err)
	}
	return ch
}

func TestChallengesConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  ChallengesConfig
		want []string
	}{
		{"zero means defaults", ChallengesConfig{}, nil},
		{"explicit", ChallengesConfig{Window: time.Minute, MaxEntries: 1}, nil},
		{"window too short", ChallengesConfig{Window: time.Millisecond}, []string{"window 1ms"}},
		{"window too long", ChallengesConfig{Window: 8 * 24 * time.Hour}, []string{"window 192h"}},
		{"max entries", ChallengesConfig{MaxEntries: -1}, []string{"max_entries -1"}},
		{"every problem at once", ChallengesConfig{Window: -1, MaxEntries: 1 << 29}, []string{"window -1ns", "max_entries 536870912"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			ch, nerr := NewChallenges(tt.cfg)
			if (err == nil) != (nerr == nil) || (nerr == nil) != (ch != nil) {
				t.Fatalf("Validate %v, NewChallenges %v, %v: disagree", err, ch, nerr)
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tt.want) {
				t.Errorf("%d problems, want %d: %v", n, len(tt.want), err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestChallenges(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.1")
	other := netip.MustParseAddr("192.0.2.2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	type step struct {
		at      time.Duration
		success bool // Success instead of Challenge
		src     netip.Addr
		user    string
		want    int // Challenge's n
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"registration: challenge, success, repeat", []step{
			{0, false, src, "alice", 1},
			{0, true, src, "alice", 0},
			{time.Minute, false, src, "alice", 1},
			{time.Minute, true, src, "alice", 0},
			{2 * time.Minute, false, src, "alice", 1},
		}},
		{"guessing counts up", []step{
			{0, false, src, "alice", 1},
			{time.Second, false, src, "alice", 2},
			{2 * time.Second, false, src, "alice", 3},
			{3 * time.Second, false, mapped, "alice", 4}, // same source
			{4 * time.Second, true, src, "alice", 0},
			{5 * time.Second, false, src, "alice", 1},
		}},
		{"pairs are separate", []step{
			{0, false, src, "alice", 1},
			{0, false, src, "bob", 1},
			{0, false, other, "alice", 1},
			{0, false, src, "alice", 2},
			{0, true, src, "bob", 0},
			{0, false, other, "alice", 2},
			{0, false, src, "alice", 3},
			{0, false, src, "", 1},
			{0, false, src, "Alice", 1},
		}},
		{"a pair idle for the window starts afresh", []step{
			{0, false, src, "alice", 1},
			{59 * time.Minute, false, src, "alice", 2},
			{118*time.Minute + 59*time.Second, false, src, "alice", 3}, // the window follows the last challenge
			{178*time.Minute + 59*time.Second, false, src, "alice", 1},
		}},
		{"a clock stepped back keeps counting", []step{
			{time.Hour, false, src, "alice", 1},
			{0, false, src, "alice", 2},
		}},
		{"an invalid source is not tracked", []step{
			{0, false, netip.Addr{}, "alice", 0},
			{0, false, netip.Addr{}, "alice", 0},
			{0, true, netip.Addr{}, "alice", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := newChallenges(t, ChallengesConfig{})
			for i, s := range tt.steps {
				now := t0.Add(s.at)
				if s.success {
					ch.Success(now, s.src, []byte(s.user))
					continue
				}
				if n := ch.Challenge(now, s.src, []byte(s.user)); n != s.want {
					t.Fatalf("step %d: Challenge = %d, want %d", i, n, s.want)
				}
			}
		})
	}
}

func TestChallengesEviction(t *testing.T) {
	const maxEntries = 300 // one shard
	ch := newChallenges(t, ChallengesConfig{MaxEntries: maxEntries})
	guesser := netip.MustParseAddr("2001:db8::bad")
	// The guesser is challenged again and again while 100,000 other pairs
	// come and go: recently challenged, it is not evicted.
	var n int
	for i := range 100_000 {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		if i%10 == 0 {
			n = ch.Challenge(now, guesser, []byte("alice"))
		}
		ch.Challenge(now, addrN(uint32(i)), []byte("100"))
	}
	if n != 10_000 {
		t.Errorf("guesser's count %d, want 10000", n)
	}
	if l := ch.Len(); l != maxEntries {
		t.Errorf("Len %d, want %d", l, maxEntries)
	}
	if e := ch.Evictions(); e != 100_001-maxEntries {
		t.Errorf("Evictions %d, want %d", e, 100_001-maxEntries)
	}
	// MaxEntries 1: each new pair replaces the last.
	one := newChallenges(t, ChallengesConfig{MaxEntries: 1})
	one.Challenge(t0, guesser, []byte("a"))
	one.Challenge(t0, guesser, []byte("b"))
	if one.Len() != 1 || one.Challenge(t0, guesser, []byte("a")) != 1 {
		t.Error("MaxEntries 1 not kept")
	}
}

func TestChallengesBounded(t *testing.T) {
	const maxEntries = 10_000
	ch := newChallenges(t, ChallengesConfig{MaxEntries: maxEntries})
	for i := range 100_000 {
		ch.Challenge(t0, addrN(uint32(i)), fmt.Appendf(nil, "%d", i%7))
	}
	if l := ch.Len(); l > maxEntries || l < maxEntries-64 {
		t.Errorf("Len %d, want about %d", l, maxEntries)
	}
}

func TestChallengesConcurrent(t *testing.T) {
	const (
		workers = 8
		perW    = 1000
	)
	ch := newChallenges(t, ChallengesConfig{MaxEntries: 4096})
	shared := netip.MustParseAddr("198.51.100.7")
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perW {
				ch.Challenge(t0, shared, []byte("alice"))
				src := addrN(uint32(w*perW + i))
				ch.Challenge(t0, src, []byte("bob"))
				ch.Success(t0, src, []byte("bob"))
				ch.Challenge(t0, src, []byte("carol"))
				if i%100 == 0 {
					ch.Len()
				}
			}
		})
	}
	wg.Wait()
	if n := ch.Challenge(t0, shared, []byte("alice")); n != workers*perW+1 {
		t.Errorf("shared pair: %d, want %d", n, workers*perW+1)
	}
	if l := ch.Len(); l > 4096 {
		t.Errorf("Len %d over MaxEntries", l)
	}
}

func TestChallengesAllocs(t *testing.T) {
	ch := newChallenges(t, ChallengesConfig{MaxEntries: 4096})
	v4, v6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	user := []byte("alice")
	ch.Challenge(t0, v4, user)
	ch.Challenge(t0, v6, user)
	if n := testing.AllocsPerRun(1000, func() {
		ch.Challenge(t0, v4, user)
		ch.Challenge(t0, v6, user)
		ch.Success(t0, v6, []byte("bob"))
	}); n != 0 {
		t.Errorf("existing pair: %v allocs per run", n)
	}
	// Full: each new pair evicts one.
	next := uint32(0)
	for range 4 * 4096 {
		ch.Challenge(t0, addrN(next), user)
		next++
	}
	if n := testing.AllocsPerRun(10_000, func() {
		ch.Challenge(t0, addrN(next), user)
		next++
	}); n != 0 {
		t.Errorf("new pair when full: %v allocs per run", n)
	}
}

func BenchmarkChallenges(b *testing.B) {
	user := []byte("alice")
	b.Run("existing", func(b *testing.B) {
		ch := newChallenges(b, ChallengesConfig{})
		src := netip.MustParseAddr("192.0.2.1")
		for b.Loop() {
			ch.Challenge(t0, src, user)
		}
	})
	b.Run("new_full", func(b *testing.B) {
		ch := newChallenges(b, ChallengesConfig{MaxEntries: 100_000})
		var n uint32
		for range 200_000 {
			ch.Challenge(t0, addrN(n), user)
			n++
		}
		for b.Loop() {
			ch.Challenge(t0, addrN(n), user)
			n++
		}
	})
}
