package listen

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pbxgate/pbxgate/internal/sniff"
)

// TestRefusedHold: with RefusedHold, a refused connection stays open,
// unread and unanswered, for the hold and is then reset — the first one
// (refused after Accept) and the ones after it (accept4) alike — while
// allowed sources are served meanwhile.
func TestRefusedHold(t *testing.T) {
	h := newHolder()
	const hold = 400 * time.Millisecond
	ts := start(t, "tcp4", Config{Handlers: map[sniff.Proto]Handler{sniff.HTTP: h}, RefusedHold: hold,
		Allowed: func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.66") }})
	dialFrom := func(src string) net.Conn { return dialFrom(t, src, ts.addr) }
	start := time.Now()
	var refused []net.Conn
	for range 3 {
		c := dialFrom("127.0.0.66")
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		refused = append(refused, c)
	}
	ok := dialFrom("127.0.0.1")
	if _, err := ok.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	wait(t, h.started, "the allowed connection served while others are held")
	for i, c := range refused {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) && time.Since(start) < hold {
			t.Fatalf("refused connection %d: %v before the hold was over, want it held open", i, err)
		}
	}
	if n := ts.pit.held(); n != 3 && time.Since(start) < hold {
		t.Errorf("%d connections held, want 3", n)
	}
	for i, c := range refused {
		_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
		b, err := io.ReadAll(c)
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) || len(b) != 0 {
			t.Errorf("refused connection %d after the hold: %q, %v; want a reset", i, b, err)
		}
	}
	if d := time.Since(start); d < hold {
		t.Errorf("closed after %v, before the hold of %v", d, hold)
	}
	if n := ts.pit.held(); n != 0 {
		t.Errorf("%d connections still held after the hold", n)
	}
}

// TestTarpitBounds: the tarpit holds nothing with a zero hold (or when
// nil), at most
// maxHeld connections, and a shorter hold than the last one's only when
// the queue is empty (it stays in expiry order); close releases everything
// and refuses more.
func TestTarpitBounds(t *testing.T) {
	var p tarpit
	pair := func() (net.Conn, net.Conn) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return a, b
	}
	a, _ := pair()
	if p.holdConn(a, 0) {
		t.Fatal("held with a zero hold")
	}
	var none *tarpit // Guard's: refused connections are closed at once
	if none.holdConn(a, time.Hour) {
		t.Fatal("a nil tarpit held a connection")
	}
	var peers []net.Conn
	for i := range maxHeld {
		a, b := pair()
		if !p.holdConn(a, time.Hour) {
			t.Fatalf("connection %d not held", i)
		}
		peers = append(peers, b)
	}
	a, _ = pair()
	if p.holdConn(a, 2*time.Hour) {
		t.Error("held beyond maxHeld")
	}
	p.close()
	for i, b := range peers {
		if _, err := b.Read(make([]byte, 1)); err == nil {
			t.Fatalf("peer %d: connection not closed by close", i)
		}
	}
	a, _ = pair()
	if p.holdConn(a, time.Hour) {
		t.Error("held after close")
	}
	var q tarpit
	defer q.close()
	a, _ = pair()
	b, _ := pair()
	if !q.holdConn(a, time.Hour) || q.holdConn(b, time.Minute) {
		t.Error("a shorter hold behind a longer one was taken")
	}
}
