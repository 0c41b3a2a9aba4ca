package store

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// setMeta edits both meta pages of a 4 KiB-page file with fn and fixes
// their checksums, as an attacker crafting a file would.
func setMeta(data []byte, fn func(m []byte)) {
	for _, off := range []int{pageHeaderLen, 4096 + pageHeaderLen} {
		m := data[off : off+metaLen]
		fn(m)
		h := fnv.New64a()
		h.Write(m[:metaChecksumOff])
		ne.PutUint64(m[metaChecksumOff:], h.Sum64())
	}
}

// setFree rewrites the active freelist page to list ids.
func setFree(t *testing.T, data []byte, ids ...uint64) {
	t.Helper()
	m := activeMeta(t, data)
	if m.freelist == noFreelist {
		t.Fatal("no freelist page")
	}
	p := data[m.freelist*4096:]
	ne.PutUint16(p[10:], uint16(len(ids)))
	for i, id := range ids {
		ne.PutUint64(p[pageHeaderLen+8*i:], id)
	}
}

// eachPage calls fn for every page of a 4 KiB-page file whose header names
// it and has the given flags (live or free copies alike).
func eachPage(data []byte, flags uint16, fn func(p []byte)) int {
	n := 0
	for off := 2 * 4096; off+4096 <= len(data); off += 4096 {
		p := data[off : off+4096]
		if ne.Uint64(p) == uint64(off/4096) && ne.Uint16(p[8:]) == flags && ne.Uint16(p[10:]) > 0 {
			fn(p)
			n++
		}
	}
	return n
}

// bigFile returns a closed state file with enough entries for branch pages.
func bigFile(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	b := openT(t, path, BoltOptions{})
	// One transaction: 2000 separate Puts would cost 2000 commits.
	err := b.db.Update(func(tx *bolt.Tx) error {
		for i := range 2000 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
			k := prefixKey(p)
			if err := tx.Bucket(bucketBlacklist).Put(k[:], encodeEntry(Entry{Reason: "filler filler filler"})); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCheckLayoutCrafted feeds files whose meta checksums are right but
// whose pointers lead outside the file or the page: bbolt would fault on
// them, checkLayout must refuse them.
func TestCheckLayoutCrafted(t *testing.T) {
	_, small := populated(t, t.TempDir())
	big := bigFile(t)
	if err := checkLayout(bytes.NewReader(big), int64(len(big))); err != nil {
		t.Fatalf("checkLayout(sound file) = %v", err)
	}
	for _, c := range []struct {
		name  string
		base  []byte
		patch func(t *testing.T, b []byte)
		want  string
	}{
		{"root outside the file", small, func(t *testing.T, b []byte) {
			setMeta(b, func(m []byte) { ne.PutUint64(m[16:], 1000) })
		}, "page 1000: outside pages"},
		{"root is a meta page", small, func(t *testing.T, b []byte) {
			setMeta(b, func(m []byte) { ne.PutUint64(m[16:], 1) })
		}, "page 1: outside pages"},
		{"freelist outside the file", small, func(t *testing.T, b []byte) {
			setMeta(b, func(m []byte) { ne.PutUint64(m[32:], 1<<40) })
		}, "freelist: page 1099511627776: outside"},
		{"freelist frees a meta page", small, func(t *testing.T, b []byte) {
			setFree(t, b, 1)
		}, "free page 1 outside pages"},
		{"freelist frees the root", small, func(t *testing.T, b []byte) {
			setFree(t, b, activeMeta(t, b).root)
		}, "in use but listed as free"},
		{"freelist frees a page twice", small, func(t *testing.T, b []byte) {
			setFree(t, b, activeMeta(t, b).hwm-1, activeMeta(t, b).hwm-1)
		}, "freed twice"},
		{"high water mark past the end", small, func(t *testing.T, b []byte) {
			setMeta(b, func(m []byte) { ne.PutUint64(m[40:], 1<<50) })
		}, "high water mark"},
		{"huge page size", small, func(t *testing.T, b []byte) {
			setMeta(b, func(m []byte) { ne.PutUint32(m[8:], 1<<30) })
		}, "page size 1073741824 not supported"},
		{"branch child outside the file", big, func(t *testing.T, b []byte) {
			if eachPage(b, flagBranch, func(p []byte) { ne.PutUint64(p[pageHeaderLen+8:], 1<<40) }) == 0 {
				t.Fatal("no branch page")
			}
		}, "page 1099511627776: outside pages"},
		{"leaf key past the page", big, func(t *testing.T, b []byte) {
			eachPage(b, flagLeaf, func(p []byte) { ne.PutUint32(p[pageHeaderLen+4:], 1<<31) })
		}, "run past the page"},
		{"overflow past the end", big, func(t *testing.T, b []byte) {
			eachPage(b, flagLeaf, func(p []byte) { ne.PutUint32(p[12:], 1<<30) })
		}, "overflow pages run past"},
		{"page reached twice", big, func(t *testing.T, b []byte) {
			eachPage(b, flagBranch, func(p []byte) { copy(p[pageHeaderLen+elementLen+8:], p[pageHeaderLen+8:pageHeaderLen+16]) })
		}, "reached twice"},
		{"empty branch page", big, func(t *testing.T, b []byte) {
			eachPage(b, flagBranch, func(p []byte) { ne.PutUint16(p[10:], 0) })
		}, "empty branch page"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(c.base)
			c.patch(t, b)
			err := checkLayout(bytes.NewReader(b), int64(len(b)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("checkLayout = %v, want an error containing %q", err, c.want)
			}
			wantErr(t, CheckBolt(bytes.NewReader(b)), ErrCorrupt, c.want)
		})
	}
}

// TestCheckFindsWhatBboltFinds: a file with a sound layout but a broken
// b-tree (keys out of order) passes checkLayout and fails bbolt's check.
func TestCheckFindsWhatBboltFinds(t *testing.T) {
	big := bigFile(t)
	// Swap the first two keys of every leaf page that has them.
	n := eachPage(big, flagLeaf, func(p []byte) {
		if ne.Uint16(p[10:]) < 2 {
			return
		}
		k := func(i int) []byte {
			off := pageHeaderLen + i*elementLen
			pos, ks := int(ne.Uint32(p[off+4:])), int(ne.Uint32(p[off+8:]))
			return p[off+pos : off+pos+ks]
		}
		a, b := bytes.Clone(k(0)), bytes.Clone(k(1))
		if len(a) == len(b) {
			copy(k(0), b)
			copy(k(1), a)
		}
	})
	if n == 0 {
		t.Fatal("no leaf page")
	}
	if err := checkLayout(bytes.NewReader(big), int64(len(big))); err != nil {
		t.Fatalf("checkLayout = %v, want the layout accepted", err)
	}
	wantErr(t, CheckBolt(bytes.NewReader(big)), ErrCorrupt, "bbolt check found")
}

func FuzzCheckBolt(f *testing.F) {
	_, small := populated(f, f.TempDir())
	f.Add(small)
	f.Add(small[:8192])
	f.Fuzz(func(t *testing.T, b []byte) {
		err := CheckBolt(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchema) {
				t.Fatalf("CheckBolt error wraps neither ErrCorrupt nor ErrSchema: %v", err)
			}
			return
		}
		// Accepted: every record must read back. (Not via RestoreBolt,
		// whose fsyncs would slow fuzzing to a crawl.)
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenBolt(path, BoltOptions{ReadOnly: true})
		if err != nil {
			t.Fatalf("CheckBolt accepted what OpenBolt refuses: %v", err)
		}
		defer s.Close()
		for _, l := range []List{Blacklist, Whitelist} {
			if err := s.Range(context.Background(), l, func(Entry) bool { return true }); err != nil {
				t.Fatalf("CheckBolt accepted a file whose %s does not read: %v", l, err)
			}
		}
	})
}
