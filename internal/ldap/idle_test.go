package ldap_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pbxgate/pbxgate/internal/event"
	"github.com/pbxgate/pbxgate/internal/ldap"
)

// pipeProxy serves one client over net.Pipe with a backend on another
// net.Pipe, inside a synctest bubble. chatter is how many unsolicited
// messages the backend sends, one every 30 seconds, after answering the
// bind.
func pipeProxy(t *testing.T, chatter int) (client net.Conn, done <-chan error, received <-chan int) {
	backendProxySide, backend := net.Pipe()
	rec := &event.Recorder{}
	p, err := ldap.New(ldap.Options{
		Idle: time.Minute,
		Routes: map[string]ldap.Target{
			"example.com": {Service: "pipe", Dial: func(context.Context) (net.Conn, error) { return backendProxySide, nil }},
		},
		Events: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	client, server := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- p.ServeConn(context.Background(), server, netip.MustParseAddr("192.0.2.7")) }()
	go func() {
		defer backend.Close()
		r := bufio.NewReader(backend)
		if _, err := ldap.ReadMessage(r, 0); err != nil {
			return
		}
		if _, err := backend.Write(result(1, 1, 0)); err != nil {
			return
		}
		for range chatter {
			time.Sleep(30 * time.Second)
			if _, err := backend.Write(entry(1, "tick")); err != nil {
				return
			}
		}
		io.Copy(io.Discard, r)
	}()
	if _, err := client.Write(bindMsg(1, "alice@example.com", "pw")); err != nil {
		t.Fatal(err)
	}
	count := make(chan int, 1)
	go func() {
		r := bufio.NewReader(client)
		n := 0
		for {
			if _, err := ldap.ReadMessage(r, 0); err != nil {
				count <- n
				return
			}
			n++
		}
	}()
	return client, errc, count
}

func TestProxyIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, done, received := pipeProxy(t, 0)
		defer client.Close()
		start := time.Now()
		err := waitDone(t, client, done)
		if !errors.Is(err, ldap.ErrIdle) {
			t.Fatalf("ServeConn = %v, want ErrIdle", err)
		}
		if d := time.Since(start); d < time.Minute || d > time.Minute+time.Second {
			t.Fatalf("closed after %v, want one minute", d)
		}
		if n := <-received; n != 1 {
			t.Fatalf("client received %d messages, want the bind response", n)
		}
	})
}

// Traffic in one direction keeps the other, quiet one alive.
func TestProxyIdleCountsBothDirections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, done, received := pipeProxy(t, 6)
		defer client.Close()
		start := time.Now()
		err := waitDone(t, client, done)
		if !errors.Is(err, ldap.ErrIdle) {
			t.Fatalf("ServeConn = %v, want ErrIdle", err)
		}
		if d := time.Since(start); d < 4*time.Minute || d > 4*time.Minute+time.Second {
			t.Fatalf("closed after %v, want 3 minutes of backend chatter and one idle minute", d)
		}
		if n := <-received; n != 7 {
			t.Fatalf("client received %d messages, want 7", n)
		}
	})
}

// waitDone waits for ServeConn, failing after ten (bubble) minutes.
func waitDone(t *testing.T, client net.Conn, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Minute):
		client.Close() // unblocks ServeConn so the bubble can end
		<-done
		t.Fatal("connection not closed after ten minutes")
		return nil
	}
}
