//go:build linux && !race

package httpproxy

import (
	"io"
	"testing"
)

// Allocation counts are taken without the race detector, which makes
// sync.Pool drop items at random; scripts/test.sh runs these tests in a
// second, race-free pass.

func TestSockIOAllocs(t *testing.T) {
	a, b := tcpPair(t)
	s := newSockIO(t, a)
	msg := []byte("ping")
	buf := make([]byte, 16)
	n := testing.AllocsPerRun(200, func() {
		if _, err := s.write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := s.read(buf); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per round trip, want 0", n)
	}
}
