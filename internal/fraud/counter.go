package fraud

import "sync/atomic"

// lanes is the number of cache-line-padded cells of a striped counter.
const lanes = 16

// striped is a counter split over padded cells so that goroutines counting
// for different sources do not fight over one cache line. The cell is
// chosen by the caller (from the source's hash); load sums all cells.
type striped struct {
	cell [lanes]struct {
		n atomic.Uint64
		_ [120]byte // keep cells on separate 128-byte (adjacent-line prefetch) blocks
	}
}

func (s *striped) add(h uint64) { s.cell[h&(lanes-1)].n.Add(1) }

func (s *striped) load() uint64 {
	var n uint64
	for i := range s.cell {
		n += s.cell[i].n.Load()
	}
	return n
}
