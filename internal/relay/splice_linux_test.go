package relay

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rchar reads this process's rchar from /proc/self/io: bytes read through
// read(2)-family calls. splice(2) does not count there, so a spliced relay
// adds nothing while a user-space copy adds every relayed byte.
func rchar(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/io")
	if err != nil {
		t.Fatalf("needs /proc/self/io (task I/O accounting): %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no rchar in /proc/self/io (err %v)", sc.Err())
	return 0
}

// TestPipeUsesSplice relays 64 MiB between raw loopback sockets and checks
// that the relay itself read none of it into user space. The counted path
// is measured the same way as a control, so the check can fail.
func TestPipeUsesSplice(t *testing.T) {
	const size = 64 << 20
	for _, tt := range []struct {
		m       mode
		relayed func(extra int64) bool // is the relay's own read traffic as expected?
	}{
		{modes[0], func(extra int64) bool { return extra < size/4 }},
		{modes[1], func(extra int64) bool { return extra >= size }},
	} {
		t.Run(tt.m.name, func(t *testing.T) {
			r := tt.m.make(t)
			before := rawPipes.Load()
			start := rchar(t)
			// Both directions carry size bytes; the test's own two readers
			// account for 2×size.
			transfer(t, r, size, Options{Idle: 10 * time.Second})
			extra := rchar(t) - start - 2*size
			t.Logf("relay read(2) bytes: %d", extra)
			if !tt.relayed(extra) {
				t.Fatalf("relay read %d bytes through read(2) for 2×%d relayed bytes", extra, size)
			}
			checkPath(t, tt.m, before)
		})
	}
}

// cpuTime returns the user+system CPU time this process has used.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
