package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	mrand "math/rand/v2"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pbxgate/pbxgate/internal/testpki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// wait bounds every blocking step of a test.
const wait = 10 * time.Second

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := ln.Accept(); ch <- res{c, err} }()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		d.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { d.Close(); r.c.Close() })
	return d.(*net.TCPConn), r.c.(*net.TCPConn)
}

// wrapped hides the *net.TCPConn type (but keeps CloseWrite), forcing the
// counted copy path.
type wrapped struct{ *net.TCPConn }

// rig is a relay under test: the test talks through clientPeer and
// backendPeer; client and backend are handed to Pipe.
type rig struct {
	clientPeer, client, backend, backendPeer net.Conn
}

type mode struct {
	name string
	raw  bool // Pipe must take the splice path
	make func(t testing.TB) rig
}

var modes = []mode{
	{"raw", true, func(t testing.TB) rig {
		cp, c := tcpPair(t)
		b, bp := tcpPair(t)
		return rig{cp, c, b, bp}
	}},
	{"counted", false, func(t testing.TB) rig {
		cp, c := tcpPair(t)
		b, bp := tcpPair(t)
		return rig{cp, wrapped{c}, wrapped{b}, bp}
	}},
	{"tls-client", false, func(t testing.TB) rig {
		cp, c := tcpPair(t)
		b, bp := tcpPair(t)
		srv, cli := tlsConfigs(t)
		return rig{tls.Client(cp, cli), tls.Server(c, srv), b, bp}
	}},
}

// tlsConfigs returns a server config with a certificate for relay.test and
// a client config trusting its CA.
func tlsConfigs(t testing.TB) (srv, cli *tls.Config) {
	t.Helper()
	ca := testpki.New(t, "relay test CA")
	return &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, "relay.test", "relay.test")}},
		&tls.Config{RootCAs: ca.Pool(), ServerName: "relay.test"}
}

type pipeResult struct {
	st  Stats
	err error
}

// startPipe runs Pipe in the background; the returned function waits for it.
func startPipe(t testing.TB, ctx context.Context, r rig, opts Options) func() (Stats, error) {
	t.Helper()
	ch := make(chan pipeResult, 1)
	go func() {
		st, err := Pipe(ctx, r.client, r.backend, opts)
		ch <- pipeResult{st, err}
	}()
	return func() (Stats, error) {
		t.Helper()
		select {
		case res := <-ch:
			return res.st, res.err
		case <-time.After(wait):
			t.Fatalf("Pipe did not return within %v", wait)
			return Stats{}, nil
		}
	}
}

func closeWrite(t testing.TB, c net.Conn) {
	t.Helper()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
}

// readAll reads c to EOF under a deadline.
func readAll(t testing.TB, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v (after %d bytes)", err, len(b))
	}
	return b
}

// expectClosed asserts that reading c ends (EOF or an error) within wait,
// without any data.
func expectClosed(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil {
		t.Fatalf("read after teardown = %d, %v; want 0 and an error", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("peer was not closed within %v", wait)
	}
}

func checkPath(t testing.TB, m mode, before int64) {
	t.Helper()
	got := rawPipes.Load() - before
	want := int64(0)
	if m.raw {
		want = 1
	}
	if got != want {
		t.Errorf("raw (splice) path taken %d times, want %d", got, want)
	}
}

func TestPipeBothDirections(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			before := rawPipes.Load()
			done := startPipe(t, context.Background(), r, Options{})

			// Request/response turns, then both sides close their writes.
			for i, turn := range []struct{ req, resp string }{
				{"PING one", "PONG one"},
				{"second request, longer", "2"},
			} {
				if _, err := r.clientPeer.Write([]byte(turn.req)); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(turn.req))
				_ = r.backendPeer.SetReadDeadline(time.Now().Add(wait))
				if _, err := io.ReadFull(r.backendPeer, got); err != nil || string(got) != turn.req {
					t.Fatalf("turn %d: backend got %q, %v", i, got, err)
				}
				if _, err := r.backendPeer.Write([]byte(turn.resp)); err != nil {
					t.Fatal(err)
				}
				got = make([]byte, len(turn.resp))
				_ = r.clientPeer.SetReadDeadline(time.Now().Add(wait))
				if _, err := io.ReadFull(r.clientPeer, got); err != nil || string(got) != turn.resp {
					t.Fatalf("turn %d: client got %q, %v", i, got, err)
				}
			}
			closeWrite(t, r.clientPeer)
			closeWrite(t, r.backendPeer)
			if b := readAll(t, r.backendPeer); len(b) != 0 {
				t.Fatalf("backend got extra %q", b)
			}
			if b := readAll(t, r.clientPeer); len(b) != 0 {
				t.Fatalf("client got extra %q", b)
			}
			st, err := done()
			if err != nil {
				t.Fatalf("Pipe: %v", err)
			}
			want := Stats{ClientToBackend: int64(len("PING one") + len("second request, longer")), BackendToClient: int64(len("PONG one") + 1)}
			if st != want {
				t.Fatalf("Stats = %+v, want %+v", st, want)
			}
			checkPath(t, m, before)
		})
	}
}

// stream writes size deterministic pseudo-random bytes derived from seed to
// w and returns their SHA-256.
func stream(w io.Writer, seed uint64, size int64) ([]byte, error) {
	var s [32]byte
	s[0] = byte(seed)
	src := mrand.NewChaCha8(s)
	h := sha256.New()
	_, err := io.CopyN(io.MultiWriter(w, h), src, size)
	return h.Sum(nil), err
}

// transfer sends size bytes each way at the same time, half-closes, and
// checks integrity, the Stats and the error.
func transfer(t testing.TB, r rig, size int64, opts Options) {
	t.Helper()
	done := startPipe(t, context.Background(), r, opts)
	type sent struct {
		sum []byte
		err error
	}
	send := func(c net.Conn, seed uint64, ch chan<- sent) {
		sum, err := stream(c, seed, size)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		ch <- sent{sum, err}
	}
	recv := func(c net.Conn) ([]byte, int64, error) {
		_ = c.SetReadDeadline(time.Now().Add(4 * wait))
		h := sha256.New()
		n, err := io.Copy(h, c)
		return h.Sum(nil), n, err
	}
	up, down := make(chan sent, 1), make(chan sent, 1)
	go send(r.clientPeer, 1, up)
	go send(r.backendPeer, 2, down)
	type got struct {
		sum []byte
		n   int64
		err error
	}
	atBackend := make(chan got, 1)
	go func() { s, n, err := recv(r.backendPeer); atBackend <- got{s, n, err} }()
	cs, cn, cerr := recv(r.clientPeer)
	bg := <-atBackend
	u, d := <-up, <-down
	for _, e := range []error{u.err, d.err, cerr, bg.err} {
		if e != nil {
			t.Fatal(e)
		}
	}
	if bg.n != size || !bytes.Equal(bg.sum, u.sum) {
		t.Fatalf("client→backend: got %d bytes, hash match %v; sent %d", bg.n, bytes.Equal(bg.sum, u.sum), size)
	}
	if cn != size || !bytes.Equal(cs, d.sum) {
		t.Fatalf("backend→client: got %d bytes, hash match %v; sent %d", cn, bytes.Equal(cs, d.sum), size)
	}
	st, err := done()
	if err != nil {
		t.Fatalf("Pipe: %v", err)
	}
	if st != (Stats{size, size}) {
		t.Fatalf("Stats = %+v, want %d each way", st, size)
	}
}

func TestPipeLargeTransfer(t *testing.T) {
	sizes := map[string]int64{"raw": 64 << 20, "counted": 32 << 20, "tls-client": 8 << 20}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			before := rawPipes.Load()
			// An idle timeout must not disturb a busy connection.
			transfer(t, m.make(t), sizes[m.name], Options{Idle: 5 * time.Second})
			checkPath(t, m, before)
		})
	}
}

func TestPipeHalfClose(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			done := startPipe(t, context.Background(), r, Options{})
			if _, err := r.clientPeer.Write([]byte("question")); err != nil {
				t.Fatal(err)
			}
			closeWrite(t, r.clientPeer)
			// The backend sees the question and then EOF...
			if got := readAll(t, r.backendPeer); string(got) != "question" {
				t.Fatalf("backend got %q", got)
			}
			// ...and can still answer through the half-open relay.
			if _, err := r.backendPeer.Write([]byte("answer")); err != nil {
				t.Fatal(err)
			}
			closeWrite(t, r.backendPeer)
			if got := readAll(t, r.clientPeer); string(got) != "answer" {
				t.Fatalf("client got %q", got)
			}
			st, err := done()
			if err != nil {
				t.Fatalf("Pipe: %v", err)
			}
			if st != (Stats{8, 6}) {
				t.Fatalf("Stats = %+v", st)
			}
		})
	}
}

func TestPipeIdleTimeout(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			start := time.Now()
			done := startPipe(t, context.Background(), r, Options{Idle: idle})
			_, err := done()
			elapsed := time.Since(start)
			if !errors.Is(err, ErrIdle) {
				t.Fatalf("Pipe: %v, want ErrIdle", err)
			}
			if elapsed < idle {
				t.Fatalf("closed after %v, before the idle timeout %v", elapsed, idle)
			}
			expectClosed(t, r.backendPeer)
			if m.name != "tls-client" { // the TLS peer never finished its handshake
				expectClosed(t, r.clientPeer)
			}
		})
	}
}

// A client that stops reading while the backend keeps sending moves no bytes
// once the socket buffers are full: that is idle too, and closing it frees
// the blocked writer.
func TestPipeIdleStalledReader(t *testing.T) {
	const idle = 200 * time.Millisecond
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			done := startPipe(t, context.Background(), r, Options{Idle: idle})
			wrote := make(chan int64, 1)
			go func() {
				var n int64
				buf := make([]byte, 64<<10)
				// Bounded: ends when the relay closes the connection.
				_ = r.backendPeer.SetWriteDeadline(time.Now().Add(wait))
				for {
					k, err := r.backendPeer.Write(buf)
					n += int64(k)
					if err != nil {
						wrote <- n
						return
					}
				}
			}()
			st, err := done()
			if !errors.Is(err, ErrIdle) {
				t.Fatalf("Pipe: %v, want ErrIdle", err)
			}
			n := <-wrote
			if n == 0 || st.BackendToClient > n {
				t.Fatalf("backend wrote %d, relay forwarded %d", n, st.BackendToClient)
			}
		})
	}
}

func TestPipeContextCancel(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			ctx, cancel := context.WithCancel(context.Background())
			done := startPipe(t, ctx, r, Options{Idle: time.Hour})
			if m.name != "tls-client" {
				// Prove the relay is running before cancelling it.
				if _, err := r.clientPeer.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				var b [1]byte
				_ = r.backendPeer.SetReadDeadline(time.Now().Add(wait))
				if _, err := io.ReadFull(r.backendPeer, b[:]); err != nil {
					t.Fatal(err)
				}
			}
			cancel()
			_, err := done()
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Pipe: %v, want context.Canceled", err)
			}
			expectClosed(t, r.backendPeer)
			if m.name != "tls-client" {
				expectClosed(t, r.clientPeer)
			}
		})
	}
}

func TestPipeBackendReset(t *testing.T) {
	for _, m := range modes[:2] {
		t.Run(m.name, func(t *testing.T) {
			r := m.make(t)
			done := startPipe(t, context.Background(), r, Options{})
			bp := r.backendPeer.(*net.TCPConn)
			if err := bp.SetLinger(0); err != nil {
				t.Fatal(err)
			}
			bp.Close() // sends RST
			_, err := done()
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("Pipe: %v, want connection reset", err)
			}
			expectClosed(t, r.clientPeer)
		})
	}
}

func TestPipeClearsStaleDeadlines(t *testing.T) {
	r := modes[0].make(t)
	// A sniffing deadline left by the caller, already in the past.
	_ = r.client.SetReadDeadline(time.Now().Add(-time.Second))
	_ = r.backend.SetReadDeadline(time.Now().Add(-time.Second))
	done := startPipe(t, context.Background(), r, Options{})
	if _, err := r.clientPeer.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	closeWrite(t, r.clientPeer)
	if got := readAll(t, r.backendPeer); string(got) != "late" {
		t.Fatalf("backend got %q", got)
	}
	closeWrite(t, r.backendPeer)
	readAll(t, r.clientPeer)
	if _, err := done(); err != nil {
		t.Fatal(err)
	}
}

// chunks yields n chunks of size bytes, then EOF.
type chunks struct{ n, size int }

func (c *chunks) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	c.n--
	return min(len(p), c.size), nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestCopyCounted(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name         string
		src          io.Reader
		dst          io.Writer
		wantN        int64
		wantProgress uint64
		wantErr      error
	}{
		{"eof is success", &chunks{3, 10}, io.Discard, 30, 60, nil},
		{"write error", &chunks{3, 10}, writerFunc(func(p []byte) (int, error) { return 4, boom }), 4, 14, boom},
		{"short write", &chunks{3, 10}, writerFunc(func(p []byte) (int, error) { return 4, nil }), 4, 14, io.ErrShortWrite},
		{"bogus write count", &chunks{3, 10}, writerFunc(func(p []byte) (int, error) { return 99, nil }), 0, 10, nil},
		{"read error", readerFunc(func(p []byte) (int, error) { return 0, boom }), io.Discard, 0, 0, boom},
		{"no progress", readerFunc(func(p []byte) (int, error) { return 0, nil }), io.Discard, 0, 0, io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var progress atomic.Uint64
			n, err := copyCounted(tt.dst, tt.src, make([]byte, 16), &progress)
			if tt.name == "bogus write count" {
				if err == nil {
					t.Fatal("want an error for an impossible write count")
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if n != tt.wantN || progress.Load() != tt.wantProgress {
				t.Fatalf("n = %d, progress = %d; want %d, %d", n, progress.Load(), tt.wantN, tt.wantProgress)
			}
		})
	}
}

func TestCopyCountedAllocs(t *testing.T) {
	var progress atomic.Uint64
	buf := make([]byte, bufSize)
	src := &chunks{}
	allocs := testing.AllocsPerRun(100, func() {
		*src = chunks{64, bufSize}
		if _, err := copyCounted(io.Discard, src, buf, &progress); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("copyCounted allocates %v times per copy, want 0", allocs)
	}
}

func benchmarkPipe(b *testing.B, m mode) {
	const chunk = 1 << 20
	r := m.make(b)
	done := startPipe(b, context.Background(), r, Options{Idle: time.Minute})
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r.backendPeer)
		drained <- err
	}()
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	cpu0, haveCPU := cpuTime()
	for b.Loop() {
		if _, err := r.clientPeer.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	closeWrite(b, r.clientPeer)
	if err := <-drained; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if cpu1, _ := cpuTime(); haveCPU {
		// Whole-process CPU (test peers included) per relayed MiB: where
		// splice shows its gain on a loopback benchmark.
		b.ReportMetric(float64(cpu1-cpu0)/float64(b.N), "cpu-ns/MiB")
	}
	closeWrite(b, r.backendPeer)
	if _, err := done(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPipeTCP relays between raw loopback sockets (splice on Linux).
func BenchmarkPipeTCP(b *testing.B) { benchmarkPipe(b, modes[0]) }

// BenchmarkPipeCounted relays the same bytes through the user-space copy.
func BenchmarkPipeCounted(b *testing.B) { benchmarkPipe(b, modes[1]) }
