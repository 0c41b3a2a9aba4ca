package fraud

import (
	"sync/atomic"
	"unsafe"
)

// hugePage is the size of a transparent huge page on the platforms that map
// big tables off the heap (2 MiB on amd64 and arm64 Linux with 4 KiB base
// pages).
const hugePage = 2 << 20

// mappedBytes counts the bytes currently mapped by bigSlice off the Go heap
// (the heap statistics do not see them).
var mappedBytes atomic.Int64

// bigSlice returns a zeroed slice of n elements of E, a type that must hold
// no Go pointers. A slice of at least hugePage bytes is mapped off the Go
// heap where the platform allows it (mapHuge), 2 MiB-aligned and advised to
// be backed by transparent huge pages: a table read at random addresses then
// needs one TLB entry per 2 MiB instead of one per 4 KiB, which saves the
// page walks (costly under virtualisation) once lookups spread over more
// pages than the TLB holds (1M addresses: 25 huge pages against 12k small
// ones). Otherwise (smaller, other platforms, mapping refused) it comes
// from the Go heap.
//
// A mapping is released by a cleanup once owner is unreachable, so the
// slice must be reachable only through owner, and a function using the
// slice must keep owner alive until its last access (runtime.KeepAlive);
// then a reader still holding a replaced owner keeps its memory mapped, and
// no grace period or reader bookkeeping is needed. Released mappings go
// back to the system at the first garbage collection after the owner is
// dropped (at the latest the forced one every two minutes).
func bigSlice[E, O any](owner *O, n int) []E {
	var e E
	sz := unsafe.Sizeof(e)
	if n <= 0 || sz == 0 || uintptr(n) > (^uintptr(0)-2*hugePage)/sz || uintptr(n)*sz < hugePage {
		return make([]E, n)
	}
	p, mapped := mapHuge(uintptr(n)*sz, owner)
	if p == nil {
		return make([]E, n)
	}
	mappedBytes.Add(int64(mapped))
	return unsafe.Slice((*E)(p), n)
}
