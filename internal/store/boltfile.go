package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// checkLayout walks the page structure of a bbolt file with bounds-checked
// reads before bbolt itself maps it.
//
// bbolt trusts the file: it follows page ids and element offsets straight
// into its memory map, so a damaged or crafted file can make it read past the
// mapping, which kills the process with a fault that recover cannot catch.
// checkLayout finds everything bbolt would follow from the active meta page
// (the freelist, every branch, leaf and overflow page reachable from the root
// bucket, nested and inline buckets) and proves it lies inside the file and
// inside its page. It also refuses a freelist naming a meta page, a page in
// use or a page twice, which a writer would hand out again and overwrite.
// It does not check what only tx.Check checks (key order, pages neither
// reachable nor free): once the layout is sound, bbolt can do that safely.
//
// The on-disk format is bbolt's (go.etcd.io/bbolt/internal/common), in the
// machine's byte order, as bbolt writes it.
func checkLayout(r io.ReaderAt, size int64) error {
	w := layoutWalker{r: r, size: size}
	return w.run()
}

const (
	pageHeaderLen    = 16 // id u64, flags u16, count u16, overflow u32
	elementLen       = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHeaderLen  = 16 // root pgid u64, sequence u64
	metaLen          = 64 // see metaPage
	metaChecksumOff  = 56
	boltMagic        = 0xED0CDAED
	boltVersion      = 2
	flagBranch       = 0x01
	flagLeaf         = 0x02
	flagFreelist     = 0x10
	leafFlagBucket   = 0x01
	noFreelist       = ^uint64(0)
	minPageSize      = 1024
	maxPageSize      = 64 << 10
	maxPageSpan      = 64 << 20 // one page with its overflow
	maxLayoutDepth   = 64       // b-tree levels plus bucket nesting
	freelistOverflow = 0xFFFF
)

var ne = binary.NativeEndian

// metaPage is the part of a meta page this check needs.
type metaPage struct {
	pageSize uint32
	root     uint64
	freelist uint64
	hwm      uint64 // high water mark: pages below it are in use or free
	txid     uint64
}

// parseMeta reads the meta page body at b (after the page header) and
// validates it as bbolt does: magic, version, checksum.
func parseMeta(b []byte) (metaPage, bool) {
	if len(b) < metaLen {
		return metaPage{}, false
	}
	if ne.Uint32(b[0:]) != boltMagic || ne.Uint32(b[4:]) != boltVersion {
		return metaPage{}, false
	}
	h := fnv.New64a()
	h.Write(b[:metaChecksumOff])
	if h.Sum64() != ne.Uint64(b[metaChecksumOff:]) {
		return metaPage{}, false
	}
	return metaPage{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		hwm:      ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}, true
}

type layoutWalker struct {
	r        io.ReaderAt
	size     int64
	pageSize uint64
	hwm      uint64
	seen     map[uint64]bool // pages (overflow included) already reached
	free     map[uint64]bool // pages the freelist says are free
}

func (w *layoutWalker) readAt(off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	if got, err := w.r.ReadAt(b, off); err != nil && got < n {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("truncated at byte %d", off)
		}
		return nil, err
	}
	return b, nil
}

func (w *layoutWalker) run() error {
	if w.size < 2*minPageSize {
		return fmt.Errorf("%d bytes is too small for a bbolt file", w.size)
	}
	// bbolt takes the page size from meta page 0 and, when that is
	// damaged, from the first valid meta page found at 1 KiB, 2 KiB, ...
	var m metaPage
	found := false
	for pos := int64(0); pos < w.size-pageHeaderLen-metaLen && pos <= maxPageSize; {
		b, err := w.readAt(pos+pageHeaderLen, metaLen)
		if err != nil {
			return err
		}
		if m, found = parseMeta(b); found {
			break
		}
		if pos == 0 {
			pos = minPageSize
		} else {
			pos *= 2
		}
	}
	if !found {
		return errors.New("no valid meta page: not a bbolt file")
	}
	ps := uint64(m.pageSize)
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return fmt.Errorf("meta page: page size %d not supported", ps)
	}
	if uint64(w.size) < 2*ps {
		return fmt.Errorf("%d bytes is too small for two %d-byte meta pages", w.size, ps)
	}
	// The active meta is the valid one with the higher txid (bbolt's
	// DB.meta).
	var metas [2]metaPage
	var valid [2]bool
	for i := range metas {
		b, err := w.readAt(int64(uint64(i)*ps+pageHeaderLen), metaLen)
		if err != nil {
			return err
		}
		metas[i], valid[i] = parseMeta(b)
	}
	switch {
	case valid[0] && valid[1]:
		m = metas[0]
		if metas[1].txid > metas[0].txid {
			m = metas[1]
		}
	case valid[0]:
		m = metas[0]
	case valid[1]:
		m = metas[1]
	default:
		return errors.New("both meta pages are invalid")
	}
	if uint64(m.pageSize) != ps {
		return fmt.Errorf("meta page: page size %d differs from %d", m.pageSize, ps)
	}
	w.pageSize = ps
	w.hwm = m.hwm
	if w.hwm < 3 || w.hwm > uint64(w.size)/ps {
		return fmt.Errorf("meta page: high water mark %d pages does not fit a %d-byte file of %d-byte pages", w.hwm, w.size, ps)
	}
	w.seen = map[uint64]bool{0: true, 1: true}
	if m.freelist != noFreelist {
		if err := w.checkFreelist(m.freelist); err != nil {
			return err
		}
	}
	if m.root == 0 {
		return errors.New("meta page: root bucket is inline")
	}
	return w.walk(m.root, 0)
}

// page reads page id with its overflow pages, after checking that it lies
// below the high water mark and was not reached before.
func (w *layoutWalker) page(id uint64, wantFlags uint16) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("page %d: outside pages 2..%d", id, w.hwm-1)
	}
	hdr, err := w.readAt(int64(id*w.pageSize), pageHeaderLen)
	if err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, got)
	}
	flags := ne.Uint16(hdr[8:])
	if flags&wantFlags == 0 || flags&(flags-1) != 0 {
		return nil, fmt.Errorf("page %d: unexpected page flags %#x", id, flags)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if id+overflow >= w.hwm {
		return nil, fmt.Errorf("page %d: %d overflow pages run past page %d", id, overflow, w.hwm-1)
	}
	span := (overflow + 1) * w.pageSize
	if span > maxPageSpan {
		return nil, fmt.Errorf("page %d: %d bytes with overflow is larger than %d", id, span, maxPageSpan)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("page %d: reached twice", i)
		}
		if w.free[i] {
			return nil, fmt.Errorf("page %d: in use but listed as free", i)
		}
		w.seen[i] = true
	}
	b, err := w.readAt(int64(id*w.pageSize), int(span))
	if err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return b, nil
}

func (w *layoutWalker) checkFreelist(id uint64) error {
	b, err := w.page(id, flagFreelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	first, count := uint64(0), uint64(ne.Uint16(b[10:]))
	if count == freelistOverflow {
		first, count = 1, ne.Uint64(b[pageHeaderLen:])
	}
	if count > (uint64(len(b))-pageHeaderLen)/8-first {
		return fmt.Errorf("freelist: page %d: %d ids do not fit the page", id, count)
	}
	w.free = make(map[uint64]bool, count)
	for i := range count {
		fid := ne.Uint64(b[pageHeaderLen+(first+i)*8:])
		switch {
		case fid < 2 || fid >= w.hwm:
			return fmt.Errorf("freelist: free page %d outside pages 2..%d", fid, w.hwm-1)
		case w.free[fid]:
			return fmt.Errorf("freelist: page %d freed twice", fid)
		case w.seen[fid]:
			return fmt.Errorf("freelist: page %d is the freelist itself", fid)
		}
		w.free[fid] = true
	}
	return nil
}

// walk checks the b-tree rooted at page id.
func (w *layoutWalker) walk(id uint64, depth int) error {
	if depth > maxLayoutDepth {
		return fmt.Errorf("page %d: nested more than %d levels", id, maxLayoutDepth)
	}
	b, err := w.page(id, flagBranch|flagLeaf)
	if err != nil {
		return err
	}
	if ne.Uint16(b[8:]) == flagLeaf {
		return w.leaf(b, fmt.Sprintf("page %d", id), depth)
	}
	children, err := branchChildren(b, id)
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := w.walk(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// branchChildren checks the elements of a branch page and returns the page
// ids they point to.
func branchChildren(b []byte, id uint64) ([]uint64, error) {
	count := uint64(ne.Uint16(b[10:]))
	if count == 0 {
		return nil, fmt.Errorf("page %d: empty branch page", id)
	}
	if pageHeaderLen+count*elementLen > uint64(len(b)) {
		return nil, fmt.Errorf("page %d: %d elements do not fit the page", id, count)
	}
	children := make([]uint64, count)
	for i := range count {
		off := pageHeaderLen + i*elementLen
		pos, ksize := uint64(ne.Uint32(b[off:])), uint64(ne.Uint32(b[off+4:]))
		if off+pos+ksize > uint64(len(b)) {
			return nil, fmt.Errorf("page %d: element %d: key runs past the page", id, i)
		}
		children[i] = ne.Uint64(b[off+8:])
	}
	return children, nil
}

// leaf checks the elements of a leaf page (a real one or the inline page of
// a small bucket) and walks the buckets it holds.
func (w *layoutWalker) leaf(b []byte, where string, depth int) error {
	count := uint64(ne.Uint16(b[10:]))
	if pageHeaderLen+count*elementLen > uint64(len(b)) {
		return fmt.Errorf("%s: %d elements do not fit the page", where, count)
	}
	for i := range count {
		off := pageHeaderLen + i*elementLen
		flags := ne.Uint32(b[off:])
		pos := uint64(ne.Uint32(b[off+4:]))
		ksize := uint64(ne.Uint32(b[off+8:]))
		vsize := uint64(ne.Uint32(b[off+12:]))
		end := off + pos + ksize + vsize
		if end > uint64(len(b)) {
			return fmt.Errorf("%s: element %d: key and value run past the page", where, i)
		}
		if flags&leafFlagBucket == 0 {
			continue
		}
		v := b[end-vsize : end]
		if err := w.bucket(v, fmt.Sprintf("%s element %d", where, i), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// bucket checks a bucket value: a header, then either a root page id or,
// for an inline bucket, a leaf page inside the value.
func (w *layoutWalker) bucket(v []byte, where string, depth int) error {
	if depth > maxLayoutDepth {
		return fmt.Errorf("%s: buckets nested more than %d levels", where, maxLayoutDepth)
	}
	if len(v) < bucketHeaderLen {
		return fmt.Errorf("%s: bucket value of %d bytes is shorter than its header", where, len(v))
	}
	root := ne.Uint64(v)
	if root != 0 {
		return w.walk(root, depth)
	}
	inline := v[bucketHeaderLen:]
	if len(inline) < pageHeaderLen {
		return fmt.Errorf("%s: inline bucket of %d bytes is shorter than a page header", where, len(inline))
	}
	if flags := ne.Uint16(inline[8:]); flags != flagLeaf {
		return fmt.Errorf("%s: inline bucket page has flags %#x, want a leaf", where, flags)
	}
	return w.leaf(inline, where+" inline page", depth)
}
