//go:build linux

package fraud

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"
)

// TestBigSliceMapped checks that a big slice is mapped 2 MiB-aligned,
// advised for huge pages, zeroed, and unmapped after its owner is gone.
func TestBigSliceMapped(t *testing.T) {
	type owner struct{ s []atomic.Uint64 }
	heapInUse() // let the cleanups of earlier tests' mappings run first
	before := mappedBytes.Load()
	o := &owner{}
	const n = 3 << 18 // 6 MiB of words
	o.s = bigSlice[atomic.Uint64](o, n)
	if len(o.s) != n {
		t.Fatalf("len %d", len(o.s))
	}
	addr := uintptr(unsafe.Pointer(&o.s[0]))
	if addr%hugePage != 0 {
		t.Errorf("mapped at %#x, not 2 MiB-aligned", addr)
	}
	if got := mappedBytes.Load() - before; got != 6<<20 {
		t.Errorf("mappedBytes grew by %d, want %d", got, 6<<20)
	}
	for i := range o.s {
		if o.s[i].Load() != 0 {
			t.Fatalf("word %d not zero", i)
		}
		o.s[i].Store(uint64(i))
	}
	if thp := thpMode(t); thp != "never" {
		if eligible, ok := smapsField(t, addr, "THPeligible:"); !ok || eligible != "1" {
			t.Errorf("mapping not THP-eligible (THP mode %q): %q", thp, eligible)
		}
	}
	if o.s[n-1].Load() != n-1 {
		t.Fatal("lost a write")
	}
	runtime.KeepAlive(o)
	o = nil
	for i := 0; i < 20 && mappedBytes.Load() != before; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if got := mappedBytes.Load(); got != before {
		t.Errorf("mapping not released: mappedBytes %d, was %d", got, before)
	}
	// mappedBytes drops only after munmap succeeded. The range itself is not
	// checked in /proc/self/smaps: the kernel may hand the same addresses to
	// the next mapping of any goroutine (the Go heap included) at once.
}

func TestBigSliceSmallOnHeap(t *testing.T) {
	type owner struct{ s []slot }
	before := mappedBytes.Load()
	o := &owner{}
	o.s = bigSlice[slot](o, 1000)
	if len(o.s) != 1000 || mappedBytes.Load() != before {
		t.Errorf("small slice: len %d, mapped %d bytes", len(o.s), mappedBytes.Load()-before)
	}
	runtime.KeepAlive(o)
}

// thpMode returns the selected transparent huge page mode.
func thpMode(t *testing.T) string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return "never"
	}
	s := string(b)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if j := strings.IndexByte(s[i:], ']'); j > 0 {
			return s[i+1 : i+j]
		}
	}
	t.Fatalf("cannot read THP mode from %q", s)
	return ""
}

// smapsField returns the value of field for the mapping that holds addr in
// /proc/self/smaps.
func smapsField(t *testing.T, addr uintptr, field string) (string, bool) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x ", &lo, &hi); n == 2 {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, field) {
			return strings.TrimSpace(strings.TrimPrefix(line, field)), true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return "", false
}
