package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// MaxSnapshotSize bounds a snapshot that CheckBolt and RestoreBolt accept.
const MaxSnapshotSize = 4 << 30

// restoreLockTimeout is how long RestoreBolt waits for the lock on the
// file it replaces: a running pbxgate holds it for good, so waiting long
// helps nothing.
const restoreLockTimeout = 200 * time.Millisecond

// maxCheckErrors bounds the tx.Check problems quoted in an error.
const maxCheckErrors = 5

// CheckBolt reads a snapshot made by Bolt.Snapshot and reports whether
// RestoreBolt would install it: an error wrapping ErrCorrupt when it is not
// a sound bbolt file or holds a record that does not decode, ErrSchema when
// its schema version is not this program's. It spools r to a temporary file
// (removed before it returns) because bbolt reads files, not streams.
func CheckBolt(r io.Reader) error {
	f, err := os.CreateTemp("", "pbxgate-check-*.db")
	if err != nil {
		return fmt.Errorf("check snapshot: %w", err)
	}
	name := f.Name()
	defer os.Remove(name)
	err = spool(f, r)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("check snapshot: %w", cerr)
	}
	if err != nil {
		return err
	}
	return checkFile(name, "snapshot")
}

// RestoreBolt replaces the state file at path with the snapshot read from
// r. It writes the snapshot to a temporary file beside path, checks it as
// CheckBolt does, syncs it and renames it over path, so path holds either
// the old file or the whole new one. It refuses with ErrLocked while a
// running pbxgate holds path. On any error nothing at path changes.
func RestoreBolt(path string, r io.Reader) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("restore: create state directory: %w", err)
	}
	// Hold the old file's lock until the new file is in place, so that a
	// pbxgate starting meanwhile waits, then finds the new file.
	old, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("restore: %w", err)
	default:
		defer old.Close()
		ok, err := lockFile(old, true, restoreLockTimeout)
		if err != nil {
			return fmt.Errorf("restore: lock %s: %w", path, err)
		}
		if !ok {
			return &lockedError{path: path}
		}
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".restore-*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmpName := tmp.Name()
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	if err := spool(tmp, r); err != nil {
		return err
	}
	if err := checkFile(tmpName, "snapshot"); err != nil {
		return err
	}
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("restore: sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("restore: close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return syncDir(dir)
}

// spool copies at most MaxSnapshotSize bytes of r to f.
func spool(f *os.File, r io.Reader) error {
	n, err := io.Copy(f, io.LimitReader(r, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if n > MaxSnapshotSize {
		return fmt.Errorf("%w: snapshot is larger than %d bytes", ErrCorrupt, int64(MaxSnapshotSize))
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("restore: sync directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("restore: sync directory %s: %w", dir, err)
	}
	return nil
}

// checkFile checks the bbolt file at path in depth: its page layout, then
// bbolt's own consistency check, the schema, and every key and value.
func checkFile(path, name string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkLayout(f, fi.Size())
		if err != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
		}
	}
	_ = f.Close()
	if err != nil {
		return err
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, name, err)
	}
	defer db.Close()

	// The layout check keeps bbolt inside its mapping; should it still
	// fault, this goroutine turns the fault into a panic it recovers.
	done := make(chan error, 1)
	go func() {
		var err error
		defer func() { done <- err }()
		defer recoverCorrupt(&err, name)
		debug.SetPanicOnFault(true)
		err = db.View(func(tx *bolt.Tx) error { return checkTx(tx, name) })
	}()
	return <-done
}

// checkTx runs bbolt's consistency check and decodes every record.
func checkTx(tx *bolt.Tx, name string) error {
	var problems []error
	n := 0
	for err := range tx.Check() { // drain: the checker blocks until read
		if n++; len(problems) < maxCheckErrors {
			problems = append(problems, err)
		}
	}
	if n > 0 {
		return fmt.Errorf("%w: %s: bbolt check found %d problems: %w", ErrCorrupt, name, n, errors.Join(problems...))
	}
	if err := checkSchema(tx, name); err != nil {
		return err
	}
	return tx.ForEach(func(bname []byte, bk *bolt.Bucket) error {
		switch string(bname) {
		case string(bucketMeta):
			return bk.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("%w: %s: meta %q is a bucket", ErrCorrupt, name, clip(k))
				}
				return nil
			})
		case string(bucketBlacklist), string(bucketWhitelist):
			return bk.ForEach(func(k, v []byte) error {
				if _, err := decodeListRecord(bname, k, v); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				return nil
			})
		case string(bucketHistory):
			return bk.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("%s: %w", name, corruptKey(bname, k, errors.New("nested bucket where a history belongs")))
				}
				p, err := decodeKey(k)
				if err == nil && p.Bits() != p.Addr().BitLen() {
					err = fmt.Errorf("history key is a /%d prefix, want an address", p.Bits())
				}
				if err == nil {
					_, err = decodeHistory(v)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", name, corruptKey(bname, k, err))
				}
				return nil
			})
		}
		return fmt.Errorf("%w: %s holds unknown bucket %q", ErrSchema, name, clip(bname))
	})
}
