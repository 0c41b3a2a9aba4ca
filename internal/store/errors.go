package store

import "errors"

// Sentinel errors. Errors returned by this package wrap one of these (or a
// context error) with details: which file, which key, what was found.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("store: closed")
	// ErrLocked means the state file is held by another process (or another
	// open Bolt in this process). The wrapping error names the file.
	ErrLocked = errors.New("store: state file in use")
	// ErrSchema means the state file was written by a different schema
	// version, or is a bbolt file that pbxgate did not write.
	ErrSchema = errors.New("store: unsupported schema")
	// ErrCorrupt means stored bytes could not be decoded: a damaged file, a
	// file that is not a bbolt database, or a value that does not parse.
	ErrCorrupt = errors.New("store: corrupt state")
	// ErrInvalid is returned for arguments the store refuses: an invalid
	// prefix or address, an unknown List, too much evidence, a reserved or
	// oversized meta key or value.
	ErrInvalid = errors.New("store: invalid argument")
	// ErrReadOnly is returned by writes to a store opened read-only.
	ErrReadOnly = errors.New("store: opened read-only")
)

// lockedError says which state file is in use. It unwraps to ErrLocked.
type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return "state file " + e.path + " is in use (is pbxgate running?)"
}

func (e *lockedError) Unwrap() error { return ErrLocked }
