//go:build linux

package fraud

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapping is an anonymous mapping made by mapHuge.
type mapping struct {
	p unsafe.Pointer
	n uintptr
}

// mapHuge maps size bytes (rounded up to whole huge pages) of zeroed
// anonymous memory at a 2 MiB-aligned address, advises the kernel to back
// it with transparent huge pages (which works with the common
// "[madvise]" setting of /sys/kernel/mm/transparent_hugepage/enabled), and
// registers its unmapping for when owner becomes unreachable. It returns
// nil if the system refuses the mapping.
func mapHuge[O any](size uintptr, owner *O) (unsafe.Pointer, uintptr) {
	n := (size + hugePage - 1) &^ (hugePage - 1)
	// Over-map by one huge page, then trim both ends to the aligned part.
	p, err := unix.MmapPtr(-1, 0, nil, n+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, 0
	}
	head := (hugePage - uintptr(p)%hugePage) % hugePage
	if head > 0 {
		_ = unix.MunmapPtr(p, head)
	}
	start := unsafe.Add(p, head)
	if tail := hugePage - head; tail > 0 {
		_ = unix.MunmapPtr(unsafe.Add(start, n), tail)
	}
	// Advice only: without THP (or with it set to "never") the table
	// works the same on small pages.
	_ = unix.Madvise(unsafe.Slice((*byte)(start), n), unix.MADV_HUGEPAGE)
	runtime.AddCleanup(owner, unmap, mapping{start, n})
	return start, n
}

func unmap(m mapping) {
	if unix.MunmapPtr(m.p, m.n) == nil {
		mappedBytes.Add(-int64(m.n))
	}
}
