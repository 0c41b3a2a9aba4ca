package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v5"
	"go.uber.org/goleak"
)

const (
	testRealm  = "bench.example.org"
	testSecret = "0123456789abcdef-test"
)

// startPion runs pion/turn's own server on 127.0.0.1 with TURN REST
// credentials (pion's LongTermTURNRESTAuthHandler, an implementation other
// than the tool's) and relays on 127.0.0.1; it returns its address.
func startPion(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	srv, err := pionturn.NewServer(pionturn.ServerConfig{
		Realm:         testRealm,
		AuthHandler:   pionturn.LongTermTURNRESTAuthHandler(testSecret, lf.NewLogger("auth")),
		LoggerFactory: lf,
		PacketConnConfigs: []pionturn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &pionturn.RelayAddressGeneratorStatic{
				RelayAddress: net.IPv4(127, 0, 0, 1),
				Address:      "127.0.0.1",
			},
		}},
	})
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return pc.LocalAddr().String()
}

// fields parses a TURNLOAD line into its keys and values.
func fields(t *testing.T, res *result) map[string]string {
	t.Helper()
	s := res.String()
	rest, ok := strings.CutPrefix(s, "TURNLOAD ")
	if !ok {
		t.Fatalf("line %q does not start with TURNLOAD", s)
	}
	m := map[string]string{}
	for _, kv := range strings.Fields(rest) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%q in %q is not key=value", kv, s)
		}
		m[k] = v
	}
	return m
}

func num(t *testing.T, m map[string]string, k string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(m[k], 64)
	if err != nil {
		t.Fatalf("%s=%q is not a number (line %v)", k, m[k], m)
	}
	return v
}

// TestModesAgainstPion runs every mode briefly against pion's server and
// checks that what the tool counts adds up.
func TestModesAgainstPion(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the server's Close (cleanups run last in, first out)
	addr := startPion(t)
	base := []string{"-server", addr, "-realm", testRealm, "-secret", testSecret, "-pid", strconv.Itoa(os.Getpid()), "-sources", "2"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		mode  string
		args  []string
		check func(t *testing.T, m map[string]string)
	}{
		{"binding", []string{"-sockets", "2", "-window", "4", "-warmup", "100ms", "-duration", "300ms"}, func(t *testing.T, m map[string]string) {
			if ok, sent := num(t, m, "ok"), num(t, m, "sent"); ok <= 0 || ok > sent+8 {
				t.Errorf("ok=%v sent=%v: want 0 < ok <= sent + the windows outstanding at the start", ok, sent)
			}
			if num(t, m, "rate") <= 0 || num(t, m, "other") != 0 {
				t.Errorf("rate %s, other %s: want a rate and no foreign datagrams", m["rate"], m["other"])
			}
		}},
		{"alloc", []string{"-concurrency", "4", "-warmup", "100ms", "-duration", "300ms"}, func(t *testing.T, m map[string]string) {
			if num(t, m, "ok") <= 0 || num(t, m, "failed") != 0 {
				t.Errorf("ok=%s failed=%s: want allocations and no failure (%s)", m["ok"], m["failed"], m["first_error"])
			}
		}},
		{"relay", []string{"-allocs", "3", "-window", "4", "-warmup", "100ms", "-duration", "300ms"}, func(t *testing.T, m map[string]string) {
			peer, client, relayed := num(t, m, "peer_rx"), num(t, m, "client_rx"), num(t, m, "relayed")
			if client <= 0 || relayed != peer+client {
				t.Errorf("peer_rx=%v client_rx=%v relayed=%v: want echoes and relayed = both crossings", peer, client, relayed)
			}
			// The window's edges cut a few packets either way.
			if d := peer - client; d > 3*4 || d < -3*4 {
				t.Errorf("peer_rx %v and client_rx %v differ by more than the windows in flight", peer, client)
			}
		}},
		{"streams", []string{"-n", "10", "-warmup", "200ms", "-duration", "400ms", "-drain", "300ms"}, func(t *testing.T, m map[string]string) {
			// 10 streams every 20 ms for 400 ms: 200 measured packets.
			if sent := num(t, m, "sent"); sent < 199 || sent > 201 {
				t.Errorf("sent=%v, want 200", sent)
			}
			// Not "pass": its verdict also needs the harness to keep its
			// schedule, which a loaded CI machine does not promise.
			if num(t, m, "loss_pct") != 0 || num(t, m, "echoed") != num(t, m, "sent") || num(t, m, "peer_rx") != num(t, m, "sent") {
				t.Errorf("want every measured packet at the peer and back: %v", m)
			}
			if num(t, m, "rtt_p50_ms") <= 0 || num(t, m, "lossy_streams") != 0 {
				t.Errorf("rtt_p50_ms=%s lossy_streams=%s", m["rtt_p50_ms"], m["lossy_streams"])
			}
		}},
		{"mem", []string{"-levels", "4,8", "-settle", "0s"}, func(t *testing.T, m map[string]string) {
			for _, k := range []string{"rss_idle_kb", "rss_4_kb", "rss_8_kb", "kb_per_1000_at_8"} {
				num(t, m, k)
			}
			if m["release_failed"] != "0" || m["levels"] != "4,8" {
				t.Errorf("release_failed=%s levels=%s", m["release_failed"], m["levels"])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			res, err := run(ctx, tt.mode, append(append([]string{}, base...), tt.args...))
			if err != nil {
				t.Fatal(err)
			}
			m := fields(t, res)
			if m["mode"] != tt.mode {
				t.Fatalf("mode=%q, want %q", m["mode"], tt.mode)
			}
			tt.check(t, m)
		})
	}
}

// TestRefusals: a run that cannot authenticate fails and says why, rather
// than reporting a rate.
func TestRefusals(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) }) // after the server's Close (cleanups run last in, first out)
	addr := startPion(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong secret", []string{"alloc", "-realm", testRealm, "-secret", "not-the-secret", "-concurrency", "1"}, "no allocation completed"},
		{"wrong realm", []string{"relay", "-realm", "other.example", "-secret", testSecret, "-allocs", "1"}, `realm is "bench.example.org"`},
		{"no secret", []string{"alloc", "-realm", testRealm}, "needs -realm, and -secret or -user"},
		{"bad size", []string{"relay", "-realm", testRealm, "-secret", testSecret, "-size", "170"}, "multiple of 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-server", addr, "-warmup", "0s", "-duration", "200ms", "-timeout", "500ms"}, tt.args[1:]...)
			res, err := run(ctx, tt.args[0], args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v; want an error containing %q", res, err, tt.want)
			}
		})
	}
}
