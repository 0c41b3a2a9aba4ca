package relay

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

func TestIdleClock(t *testing.T) {
	const idle = time.Minute
	t0 := time.Unix(1000, 0)
	type sample struct {
		progress uint64
		after    time.Duration // since t0
		expired  bool
	}
	tests := []struct {
		name    string
		samples []sample
	}{
		{"silent expires at idle", []sample{{0, 15 * time.Second, false}, {0, 59 * time.Second, false}, {0, idle, true}}},
		{"change restarts the clock", []sample{{5, 50 * time.Second, false}, {5, 109 * time.Second, false}, {5, 110 * time.Second, true}}},
		{"any change counts, even a decrease", []sample{{9, 30 * time.Second, false}, {2, 80 * time.Second, false}, {2, 139 * time.Second, false}, {2, 140 * time.Second, true}}},
		{"steady traffic never expires", []sample{{1, 50 * time.Second, false}, {2, 100 * time.Second, false}, {3, 150 * time.Second, false}, {4, 200 * time.Second, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := idleClock{idle: idle, since: t0}
			for i, s := range tt.samples {
				if got := c.expired(s.progress, t0.Add(s.after)); got != s.expired {
					t.Fatalf("sample %d (%+v): expired = %v", i, s, got)
				}
			}
		})
	}
}

func TestSampleInterval(t *testing.T) {
	for idle, want := range map[time.Duration]time.Duration{
		time.Minute:            15 * time.Second,
		200 * time.Millisecond: 50 * time.Millisecond,
		time.Microsecond:       minSample,
	} {
		if got := sampleInterval(idle); got != want {
			t.Errorf("sampleInterval(%v) = %v, want %v", idle, got, want)
		}
	}
}

// TestPipeIdleFakeClock checks the idle timeout's precision with a fake
// clock: traffic in either single direction keeps the connection open for
// longer than Idle, and a silent connection closes between Idle and
// 1.25×Idle after its last byte.
func TestPipeIdleFakeClock(t *testing.T) {
	const idle = time.Minute
	for _, dir := range []direction{clientToBackend, backendToClient} {
		t.Run(dir.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clientPeer, client := net.Pipe()
				backend, backendPeer := net.Pipe()
				from, to := clientPeer, backendPeer
				if dir == backendToClient {
					from, to = backendPeer, clientPeer
				}
				type res struct {
					st  Stats
					err error
				}
				done := make(chan res, 1)
				go func() {
					st, err := Pipe(context.Background(), client, backend, Options{Idle: idle})
					done <- res{st, err}
				}()
				// One byte every 40s for 200s: never idle for a whole minute.
				var b [1]byte
				for range 5 {
					time.Sleep(40 * time.Second)
					if _, err := from.Write(b[:]); err != nil {
						t.Fatal(err)
					}
					if _, err := to.Read(b[:]); err != nil {
						t.Fatal(err)
					}
					select {
					case r := <-done:
						t.Fatalf("Pipe returned on a live connection: %v", r.err)
					default:
					}
				}
				last := time.Now()
				r := <-done
				silent := time.Since(last)
				if !errors.Is(r.err, ErrIdle) {
					t.Fatalf("Pipe: %v, want ErrIdle", r.err)
				}
				if silent < idle || silent > idle+idle/4 {
					t.Fatalf("closed %v after the last byte, want within [%v, %v]", silent, idle, idle+idle/4)
				}
				var moved int64 = r.st.ClientToBackend + r.st.BackendToClient
				if moved != 5 {
					t.Fatalf("Stats = %+v, want 5 bytes in total", r.st)
				}
				// The peers see the relay close.
				if _, err := clientPeer.Read(b[:]); err == nil {
					t.Fatal("client peer still open")
				}
				if _, err := backendPeer.Read(b[:]); err == nil {
					t.Fatal("backend peer still open")
				}
			})
		})
	}
}

// TestPipeIdleTrickle runs real sockets (the raw path samples the kernel's
// TCP_INFO counters): a byte every 50ms in one direction keeps a 500ms idle
// timeout from firing for three times its length.
func TestPipeIdleTrickle(t *testing.T) {
	const idle = 500 * time.Millisecond
	for _, m := range modes[:2] {
		for _, dir := range []direction{clientToBackend, backendToClient} {
			t.Run(m.name+"/"+dir.String(), func(t *testing.T) {
				t.Parallel()
				r := m.make(t)
				ctx, cancel := context.WithCancel(context.Background())
				done := startPipe(t, ctx, r, Options{Idle: idle})
				from, to := r.clientPeer, r.backendPeer
				if dir == backendToClient {
					from, to = r.backendPeer, r.clientPeer
				}
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				var b [1]byte
				for end := time.Now().Add(3 * idle); time.Now().Before(end); {
					<-tick.C
					if _, err := from.Write(b[:]); err != nil {
						t.Fatalf("write on a live connection: %v", err)
					}
					_ = to.SetReadDeadline(time.Now().Add(wait))
					if _, err := to.Read(b[:]); err != nil {
						t.Fatalf("read on a live connection: %v", err)
					}
				}
				cancel()
				if _, err := done(); !errors.Is(err, context.Canceled) {
					t.Fatalf("Pipe: %v, want context.Canceled (it ended on its own)", err)
				}
			})
		}
	}
}
