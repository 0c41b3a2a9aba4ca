//go:build !linux

package fraud

import "unsafe"

// mapHuge maps nothing on this platform: big tables stay on the Go heap.
func mapHuge[O any](size uintptr, owner *O) (unsafe.Pointer, uintptr) { return nil, 0 }
