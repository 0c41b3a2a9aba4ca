package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltOptions tunes OpenBolt.
type BoltOptions struct {
	// Timeout is how long OpenBolt waits for another process (or another
	// open Bolt in this process) to release the state file before it
	// returns an error wrapping ErrLocked. Zero means 1s.
	Timeout time.Duration
	// ReadOnly opens an existing file for reading only, alongside other
	// readers; writes then return ErrReadOnly. The default opens it for
	// writing, creating the directory (0700) and the file (0600) if
	// missing, and excludes every other process.
	ReadOnly bool
}

// Bolt is the embedded Store: one bbolt file, used by one process.
//
// Writes go through bbolt's Batch, so concurrent writers share one commit
// (and one fsync), and each returns once its write is on disk. Reads run in
// read-only transactions and never wait for writers.
type Bolt struct {
	db       *bolt.DB
	path     string
	readOnly bool

	closed    atomic.Bool
	done      chan struct{} // closed by Close; wakes Watch
	closeOnce sync.Once
}

var _ Store = (*Bolt)(nil)

// Bucket and meta key names of schema version 1.
var (
	bucketMeta      = []byte("meta")
	bucketBlacklist = []byte("blacklist")
	bucketWhitelist = []byte("whitelist")
	bucketHistory   = []byte("history")
	keySchema       = []byte("schema")
)

// schemaVersion is the layout this code reads and writes.
const schemaVersion = "1"

// maxOpenAttempts bounds how often OpenBolt reopens a file that was
// replaced (by RestoreBolt) while it waited for the lock.
const maxOpenAttempts = 3

// OpenBolt opens (or creates) the state file at path.
//
// Before bbolt maps the file, its page layout is checked (see checkLayout),
// so a damaged file gives an error wrapping ErrCorrupt instead of a crash. A
// file written by another schema version gives ErrSchema, a file held by
// another process ErrLocked.
func OpenBolt(path string, o BoltOptions) (*Bolt, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if !o.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create state directory: %w", err)
		}
	}
	opts := &bolt.Options{
		Timeout:  timeout,
		ReadOnly: o.ReadOnly,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			return openLocked(name, flag, mode, !o.ReadOnly, timeout)
		},
	}
	db, err := bolt.Open(path, 0o600, opts)
	if err != nil {
		return nil, openError(path, err)
	}
	if err := initSchema(db, "state file "+path, o.ReadOnly); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Bolt{db: db, path: path, readOnly: o.ReadOnly, done: make(chan struct{})}, nil
}

// openLocked opens the file, takes its lock and checks its layout, in that
// order, so no other pbxgate writes it while it is checked. If the file at
// name was replaced while waiting for the lock, it opens the new one.
func openLocked(name string, flag int, mode os.FileMode, exclusive bool, timeout time.Duration) (*os.File, error) {
	for range maxOpenAttempts {
		f, err := os.OpenFile(name, flag, mode)
		if err != nil {
			return nil, err
		}
		ok, err := lockFile(f, exclusive, timeout)
		if err != nil || !ok {
			_ = f.Close()
			if err != nil {
				return nil, fmt.Errorf("lock state file %s: %w", name, err)
			}
			return nil, &lockedError{path: name}
		}
		held, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return nil, err
		}
		if now, err := os.Stat(name); err != nil || !os.SameFile(held, now) {
			_ = f.Close() // replaced while we waited: open the new file
			continue
		}
		if held.Size() > 0 {
			if err := checkLayout(f, held.Size()); err != nil {
				_ = f.Close()
				return nil, fmt.Errorf("%w: state file %s: %v", ErrCorrupt, name, err)
			}
		}
		return f, nil
	}
	return nil, fmt.Errorf("state file %s was replaced %d times while opening it", name, maxOpenAttempts)
}

// openError classifies an error from bolt.Open.
func openError(path string, err error) error {
	var le *lockedError
	switch {
	case errors.As(err, &le), errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, bolt.ErrTimeout):
		return &lockedError{path: path}
	case errors.Is(err, bolt.ErrInvalid), errors.Is(err, bolt.ErrChecksum), errors.Is(err, bolt.ErrVersionMismatch):
		return fmt.Errorf("%w: state file %s: %v", ErrCorrupt, path, err)
	}
	return fmt.Errorf("open state file %s: %w", path, err)
}

// initSchema checks the schema version and, on a writable file, creates
// what is missing: everything on a new file, list buckets on an old one.
func initSchema(db *bolt.DB, name string, readOnly bool) (err error) {
	defer recoverCorrupt(&err, name)
	var fresh, ready bool
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			var other []byte
			_ = tx.ForEach(func(n []byte, _ *bolt.Bucket) error {
				other = n
				return errStop
			})
			if other != nil {
				return fmt.Errorf("%w: %s has no schema version but holds bucket %q: not a pbxgate state file", ErrSchema, name, clip(other))
			}
			fresh = true
			return nil
		}
		if err := checkSchema(tx, name); err != nil {
			return err
		}
		ready = tx.Bucket(bucketBlacklist) != nil && tx.Bucket(bucketWhitelist) != nil && tx.Bucket(bucketHistory) != nil
		return nil
	})
	switch {
	case err != nil:
		return err
	case readOnly && fresh:
		return fmt.Errorf("%w: %s is empty: no schema version", ErrSchema, name)
	case readOnly || ready:
		return nil // a read-only store reads missing list buckets as empty
	}
	return db.Update(func(tx *bolt.Tx) error {
		if fresh {
			m, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := m.Put(keySchema, []byte(schemaVersion)); err != nil {
				return err
			}
		}
		for _, n := range [][]byte{bucketBlacklist, bucketWhitelist, bucketHistory} {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	})
}

var errStop = errors.New("stop")

// checkSchema refuses a file without schema version 1.
func checkSchema(tx *bolt.Tx, name string) error {
	m := tx.Bucket(bucketMeta)
	if m == nil {
		return fmt.Errorf("%w: %s has no %q bucket: not a pbxgate state file", ErrSchema, name, bucketMeta)
	}
	v := m.Get(keySchema)
	if v == nil {
		return fmt.Errorf("%w: %s has no schema version: not a pbxgate state file", ErrSchema, name)
	}
	if string(v) != schemaVersion {
		return fmt.Errorf("%w: %s has schema version %q, this pbxgate expects %q", ErrSchema, name, clip(v), schemaVersion)
	}
	return nil
}

// clip shortens bytes from a file for an error message.
func clip(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}

// recoverCorrupt turns a bbolt panic (bbolt asserts rather than returns on
// some inconsistencies) into an error wrapping ErrCorrupt. bbolt's View and
// Update roll the transaction back while the panic unwinds.
func recoverCorrupt(err *error, name string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: %s: bbolt: %v", ErrCorrupt, name, r)
	}
}

// Path returns the file the store was opened from.
func (b *Bolt) Path() string { return b.path }

func (b *Bolt) begin(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func (b *Bolt) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverCorrupt(&err, "state file "+b.path)
	return b.mapErr(b.db.View(fn))
}

// update runs fn in a shared batch commit; it returns once the commit is on
// disk. bbolt may run fn more than once (when another function in the batch
// fails), so fn must set its results afresh each time.
func (b *Bolt) update(fn func(*bolt.Tx) error) error {
	if b.readOnly {
		return ErrReadOnly
	}
	return b.mapErr(b.db.Batch(fn))
}

func (b *Bolt) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bolt.ErrDatabaseNotOpen):
		return ErrClosed
	case errors.Is(err, bolt.ErrDatabaseReadOnly):
		return ErrReadOnly
	}
	return err
}

// listBucket returns the bucket name of l.
func listBucket(l List) ([]byte, error) {
	switch l {
	case Blacklist:
		return bucketBlacklist, nil
	case Whitelist:
		return bucketWhitelist, nil
	}
	return nil, fmt.Errorf("%w: unknown list %d", ErrInvalid, l)
}

// checkKey validates (l, p) and returns p masked.
func checkKey(l List, p netip.Prefix) (netip.Prefix, error) {
	if _, err := listBucket(l); err != nil {
		return netip.Prefix{}, err
	}
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("%w: invalid prefix %s", ErrInvalid, p)
	}
	return p.Masked(), nil
}

// checkEntry validates e and returns it as stored (prefix masked) with its
// encoded value.
func checkEntry(e Entry) (Entry, []byte, error) {
	p, err := checkKey(e.List, e.Prefix)
	if err != nil {
		return Entry{}, nil, err
	}
	e.Prefix = p
	if len(e.Evidence) > MaxEvidence {
		return Entry{}, nil, fmt.Errorf("%w: %s %s: %d evidence lines exceed %d", ErrInvalid, e.List, p, len(e.Evidence), MaxEvidence)
	}
	v := encodeEntry(e)
	if len(v) > maxValueLen {
		return Entry{}, nil, fmt.Errorf("%w: %s %s: entry of %d bytes exceeds %d", ErrInvalid, e.List, p, len(v), maxValueLen)
	}
	return e, v, nil
}

func corruptKey(bucket, key []byte, err error) error {
	return fmt.Errorf("%w: %s %s: %v", ErrCorrupt, bucket, keyString(key), err)
}

// Put inserts or replaces the entry with e's (List, Prefix). The prefix is
// masked. It returns ErrInvalid for an unknown List, an invalid Prefix, more
// than MaxEvidence evidence lines or an entry over 64 KiB encoded.
func (b *Bolt) Put(ctx context.Context, e Entry) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	e, v, err := checkEntry(e)
	if err != nil {
		return err
	}
	name, _ := listBucket(e.List)
	k := prefixKey(e.Prefix)
	return b.update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(name)
		if err != nil {
			return err
		}
		return bk.Put(k[:], v)
	})
}

// Get returns the entry with key (l, p.Masked()). Times come back in UTC.
func (b *Bolt) Get(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error) {
	if err := b.begin(ctx); err != nil {
		return Entry{}, false, err
	}
	p, err := checkKey(l, p)
	if err != nil {
		return Entry{}, false, err
	}
	name, _ := listBucket(l)
	k := prefixKey(p)
	var e Entry
	var found bool
	err = b.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(name)
		if bk == nil {
			return nil
		}
		v := bk.Get(k[:])
		if v == nil {
			return nil
		}
		var err error
		if e, err = decodeEntry(v); err != nil {
			return corruptKey(name, k[:], err)
		}
		found = true
		return nil
	})
	if err != nil || !found {
		return Entry{}, false, err
	}
	e.List, e.Prefix = l, p
	return e, true, nil
}

// Delete removes the entry with key (l, p.Masked()) and returns it. A
// stored value that does not decode is removed all the same; the returned
// Entry then holds only List and Prefix.
func (b *Bolt) Delete(ctx context.Context, l List, p netip.Prefix) (Entry, bool, error) {
	if err := b.begin(ctx); err != nil {
		return Entry{}, false, err
	}
	p, err := checkKey(l, p)
	if err != nil {
		return Entry{}, false, err
	}
	name, _ := listBucket(l)
	k := prefixKey(p)
	var e Entry
	var found bool
	err = b.update(func(tx *bolt.Tx) error {
		e, found = Entry{}, false
		bk := tx.Bucket(name)
		if bk == nil {
			return nil
		}
		v := bk.Get(k[:])
		if v == nil {
			return nil
		}
		found = true
		e, _ = decodeEntry(v) // undecodable: delete it anyway
		return bk.Delete(k[:])
	})
	if err != nil || !found {
		return Entry{}, false, err
	}
	e.List, e.Prefix = l, p
	return e, true, nil
}

// ctxCheckEvery is how many records a scan handles between checks of ctx.
const ctxCheckEvery = 256

// Range calls fn for every entry of l in key order (IPv4 before IPv6, then
// address, then prefix length) until fn returns false. It holds a bbolt read
// transaction while fn runs: fn must not call the store (a write from fn
// can deadlock) and should be quick. It stops at the first stored value
// that does not decode, with an error naming its key.
func (b *Bolt) Range(ctx context.Context, l List, fn func(Entry) bool) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	name, err := listBucket(l)
	if err != nil {
		return err
	}
	return b.view(func(tx *bolt.Tx) error {
		bk := tx.Bucket(name)
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n++; n%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return fmt.Errorf("store: %w", err)
				}
			}
			e, err := decodeListRecord(name, k, v)
			if err != nil {
				return err
			}
			e.List = l
			if !fn(e) {
				return nil
			}
		}
		return nil
	})
}

// decodeListRecord decodes one key and value of a list bucket.
func decodeListRecord(name, k, v []byte) (Entry, error) {
	if v == nil {
		return Entry{}, corruptKey(name, k, errors.New("nested bucket where an entry belongs"))
	}
	p, err := decodeKey(k)
	if err != nil {
		return Entry{}, corruptKey(name, k, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		return Entry{}, corruptKey(name, k, err)
	}
	e.Prefix = p
	return e, nil
}

// Count returns the number of entries in l.
func (b *Bolt) Count(ctx context.Context, l List) (int, error) {
	if err := b.begin(ctx); err != nil {
		return 0, err
	}
	name, err := listBucket(l)
	if err != nil {
		return 0, err
	}
	n := 0
	err = b.view(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(name); bk != nil {
			n = bk.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// RecordBans implements Store in one bbolt transaction of its own (not a
// shared batch: the Entry functions must run once).
func (b *Bolt) RecordBans(ctx context.Context, window time.Duration, bans []AutoBan) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	if b.readOnly {
		return ErrReadOnly
	}
	if err := checkAutoBans(window, bans); err != nil {
		return err
	}
	return b.mapErr(b.db.Update(func(tx *bolt.Tx) error {
		hb, err := tx.CreateBucketIfNotExists(bucketHistory)
		if err != nil {
			return err
		}
		lb, err := tx.CreateBucketIfNotExists(bucketBlacklist)
		if err != nil {
			return err
		}
		for _, ban := range bans {
			k := addrKey(ban.Addr)
			var old History
			if v := hb.Get(k[:]); v != nil {
				old, _ = decodeHistory(v) // undecodable: start over
			}
			h := nextHistory(old, ban.At, window)
			if err := hb.Put(k[:], encodeHistory(h)); err != nil {
				return err
			}
			e, ok := ban.Entry(h)
			if !ok {
				continue
			}
			e, v, err := checkAutoBanEntry(e)
			if err != nil {
				return err
			}
			pk := prefixKey(e.Prefix)
			if err := lb.Put(pk[:], v); err != nil {
				return err
			}
		}
		return nil
	}))
}

// checkAutoBans checks RecordBans' arguments.
func checkAutoBans(window time.Duration, bans []AutoBan) error {
	if window < 0 {
		return fmt.Errorf("%w: negative window %s", ErrInvalid, window)
	}
	for _, b := range bans {
		if !b.Addr.IsValid() {
			return fmt.Errorf("%w: invalid address", ErrInvalid)
		}
		if b.Entry == nil {
			return fmt.Errorf("%w: automatic ban of %s without an entry", ErrInvalid, b.Addr)
		}
	}
	return nil
}

// checkAutoBanEntry is checkEntry for the entry of an automatic ban, which
// belongs to the blacklist.
func checkAutoBanEntry(e Entry) (Entry, []byte, error) {
	e, v, err := checkEntry(e)
	if err == nil && e.List != Blacklist {
		err = fmt.Errorf("%w: automatic ban entry for the %s", ErrInvalid, e.List)
	}
	return e, v, err
}

// nextHistory adds a ban at time at to h.
func nextHistory(h History, at time.Time, window time.Duration) History {
	at = normTime(at)
	if h.Bans <= 0 || at.Sub(h.Last) > window {
		return History{Bans: 1, Last: at}
	}
	h.Bans++
	if at.After(h.Last) {
		h.Last = at
	}
	return h
}

// PruneHistory forgets every address whose latest ban is before cutoff
// (and every stored history that does not decode) and returns how many
// addresses it forgot.
func (b *Bolt) PruneHistory(ctx context.Context, cutoff time.Time) (int, error) {
	if err := b.begin(ctx); err != nil {
		return 0, err
	}
	var n int
	err := b.update(func(tx *bolt.Tx) error {
		n = 0
		bk := tx.Bucket(bucketHistory)
		if bk == nil {
			return nil
		}
		// Collect first: deleting under a cursor can skip the next key.
		var stale [][]byte
		c := bk.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			h, err := decodeHistory(v)
			if err != nil || h.Last.Before(cutoff) {
				stale = append(stale, bytes.Clone(k))
			}
		}
		for _, k := range stale {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// checkMetaKey validates a meta key.
func checkMetaKey(key string) error {
	if key == "" || len(key) > maxMetaKeyLen {
		return fmt.Errorf("%w: meta key of %d bytes (want 1..%d)", ErrInvalid, len(key), maxMetaKeyLen)
	}
	return nil
}

// checkMetaPut validates a meta key and value for PutMeta.
func checkMetaPut(key string, value []byte) error {
	if err := checkMetaKey(key); err != nil {
		return err
	}
	if key == string(keySchema) {
		return fmt.Errorf("%w: meta key %q is reserved", ErrInvalid, key)
	}
	if len(value) > maxValueLen {
		return fmt.Errorf("%w: meta value of %d bytes exceeds %d", ErrInvalid, len(value), maxValueLen)
	}
	return nil
}

// GetMeta returns a copy of the meta value stored under key.
func (b *Bolt) GetMeta(ctx context.Context, key string) ([]byte, bool, error) {
	if err := b.begin(ctx); err != nil {
		return nil, false, err
	}
	if err := checkMetaKey(key); err != nil {
		return nil, false, err
	}
	var v []byte
	err := b.view(func(tx *bolt.Tx) error {
		if m := tx.Bucket(bucketMeta); m != nil {
			if got := m.Get([]byte(key)); got != nil {
				v = bytes.Clone(got)
			}
		}
		return nil
	})
	if err != nil || v == nil {
		return nil, false, err
	}
	return v, true, nil
}

// PutMeta stores value under key. The key "schema" is reserved; keys are
// 1..256 bytes, values at most 64 KiB.
func (b *Bolt) PutMeta(ctx context.Context, key string, value []byte) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	if err := checkMetaPut(key, value); err != nil {
		return err
	}
	k, v := []byte(key), bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	return b.update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		return m.Put(k, v)
	})
}

// Snapshot writes a consistent copy of the whole file to w from a read
// transaction; writers continue meanwhile. RestoreBolt installs it.
func (b *Bolt) Snapshot(ctx context.Context, w io.Writer) error {
	if err := b.begin(ctx); err != nil {
		return err
	}
	return b.view(func(tx *bolt.Tx) error {
		if _, err := tx.WriteTo(w); err != nil {
			return fmt.Errorf("snapshot of %s: %w", b.path, err)
		}
		return nil
	})
}

// Watch blocks until ctx ends and returns nil: no other node writes a Bolt
// file, so fn is never called. It returns ErrClosed when the store is (or
// gets) closed first.
func (b *Bolt) Watch(ctx context.Context, fn func(Change)) error {
	if b.closed.Load() {
		return ErrClosed
	}
	select {
	case <-ctx.Done():
		return nil
	case <-b.done:
		return ErrClosed
	}
}

// Close waits for running transactions and closes the file, releasing its
// lock. Later calls do nothing and return nil.
func (b *Bolt) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		close(b.done)
		if cerr := b.db.Close(); cerr != nil {
			err = fmt.Errorf("close state file %s: %w", b.path, cerr)
		}
	})
	return err
}

// String names the store in logs.
func (b *Bolt) String() string { return "bolt(" + strconv.Quote(b.path) + ")" }
