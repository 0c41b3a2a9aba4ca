package backup

import "errors"

// Sentinel errors. Read's errors wrap one of them with the member and what
// was expected and found.
var (
	// ErrCorrupt means the archive is damaged or is not a pbxgate backup:
	// bad gzip or tar data, a bad manifest, a missing, unlisted, duplicate,
	// oversized or unsafely named member, or a state that is not a sound
	// state file.
	ErrCorrupt = errors.New("backup: corrupt archive")
	// ErrMismatch means the archive is well formed but disagrees with its
	// manifest (a member's size or SHA-256) or with this program (a newer
	// archive version, a state file of another schema version).
	ErrMismatch = errors.New("backup: archive mismatch")
)
