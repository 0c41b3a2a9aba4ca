package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/fraud"
)

func TestStartRefusesAStoreInUse(t *testing.T) {
	dir := t.TempDir()
	a := origin(t, "A")
	start(t, parse(t, webConfig(dir, "127.0.0.1:0", a, "")), &event.Recorder{})

	// A second gateway on the same data directory: its listener port is
	// free, but the state file is locked by the first.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	g2, err := New(parse(t, webConfig(dir, addr, a, "")), Options{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = g2.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is in use") {
		t.Fatalf("second Start: %v, want the store in use", err)
	}
	// Nothing of the second gateway is left open.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("the refused gateway left %s open", addr)
	}
	if err := g2.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start: %v", err)
	}
}

func TestGuardAndReloadedPolicy(t *testing.T) {
	dir := t.TempDir()
	a := origin(t, "A")
	conf := func(threshold int) string {
		return webConfig(dir, "127.0.0.1:0", a, fmt.Sprintf("fraud:\n  suspicious_per_minute: %d\n", threshold))
	}
	g := start(t, parse(t, conf(50)), &event.Recorder{})
	addr := g.Addr("web").String()

	// Unknown hosts are refusals by the gateway (weight 1). 20 are under the
	// threshold of 50.
	for range 20 {
		if code, _ := get(t, addr, "unknown.test"); code != 404 {
			t.Fatalf("unknown host: %d", code)
		}
	}
	if !g.sec.allowed(mustAddr("127.0.0.1")) {
		t.Fatal("banned under the threshold")
	}
	// The reloaded threshold applies to the counters kept across the reload.
	// The listener's configured address ("127.0.0.1:0") is unchanged, so
	// it keeps its socket.
	if err := g.Reload(parse(t, conf(5))); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The next refusal tips it; its own answer may be cut by the ban.
	if c2, err := net.Dial("tcp", addr); err == nil {
		fmt.Fprintf(c2, "GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n")
		_ = c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _ = c2.Read(make([]byte, 512))
		c2.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.sec.allowed(mustAddr("127.0.0.1")) {
		if time.Now().After(deadline) {
			t.Fatal("not banned after the threshold was lowered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The open connection was closed by the ban, and new ones are refused
	// before a byte is read.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("open connection after the ban: %d bytes, %v", n, err)
	}
	if err := g.sec.engine.Load().Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := g.sec.stats()
	if st.AutoBans != 1 || st.Blacklisted != 1 {
		t.Errorf("stats %+v, want one automatic ban", st)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestSuspectGate(t *testing.T) {
	dir := t.TempDir()
	a := origin(t, "A")
	g := start(t, parse(t, webConfig(dir, "127.0.0.1:0", a,
		"timeouts:\n  first_bytes: 1s\nfraud:\n  suspect_rate: 1\n")), &event.Recorder{})
	addr := g.Addr("web").String()
	// A request for an unknown host is refused (404): a weighted event.
	requestHost := func(src, host string) (string, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return "", err
		}
		defer c.Close()
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 64)
		n, err := c.Read(b)
		return string(b[:n]), err
	}
	request := func(src string) (string, error) { return requestHost(src, "unknown.test") }
	// One refusal makes 127.0.0.1 a suspect; it was not one yet.
	if got, err := request("127.0.0.1"); !strings.HasPrefix(got, "HTTP/1.1 404") {
		t.Fatalf("first request: %q %v", got, err)
	}
	if g.sec.engine.Load().Standing(mustAddr("127.0.0.1")) != fraud.Suspect {
		t.Fatal("not a suspect after a refusal")
	}
	// One connection a second: the burst token serves the first, the next
	// ones cannot get a turn within first_bytes (1s) and are closed
	// unanswered.
	var mu sync.Mutex
	var wg sync.WaitGroup
	answered, dropped := 0, 0
	for range 4 {
		wg.Go(func() {
			got, _ := request("127.0.0.1")
			mu.Lock()
			defer mu.Unlock()
			if strings.HasPrefix(got, "HTTP/1.1 404") {
				answered++
			} else if got == "" {
				dropped++
			}
		})
	}
	wg.Wait()
	if answered < 1 || dropped < 2 || g.sec.suspectDropped.Load() < 2 {
		t.Errorf("suspect: %d answered, %d dropped (gate counted %d); want 1-2 and the rest dropped",
			answered, dropped, g.sec.suspectDropped.Load())
	}
	// Another source, without failures, is not slowed down (its requests
	// succeed: a 404 would make it a suspect too, waiting for the same
	// one token a second).
	for range 3 {
		if got, err := requestHost("127.0.0.2", "app.test"); !strings.HasPrefix(got, "HTTP/1.1 200") {
			t.Fatalf("innocent source: %q %v", got, err)
		}
	}
	if s := g.sec.engine.Load().Standing(mustAddr("127.0.0.2")); s == fraud.Suspect {
		t.Error("the innocent source became a suspect")
	}
}
