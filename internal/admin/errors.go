package admin

import "errors"

var (
	// ErrClosed is returned by Serve after Shutdown or Close.
	ErrClosed = errors.New("admin: server closed")
	// ErrSocketInUse is returned by ListenUnix when a process answers on the
	// socket path already (another pbxgate is running).
	ErrSocketInUse = errors.New("admin: another process answers on the admin socket")
	// ErrNoToken is returned by LoadVerifier when the store holds no admin
	// token hash (EnsureToken makes one).
	ErrNoToken = errors.New("admin: no admin token in the store")
	// ErrTokenHash is returned for a stored or given token hash that is not
	// "sha256:" followed by 64 hex digits.
	ErrTokenHash = errors.New(`admin: token hash is not "sha256:" and 64 hex digits`)
	// ErrAddress and ErrDuration wrap the problems found by ParseAddress and
	// ParseDuration.
	ErrAddress  = errors.New("invalid address")
	ErrDuration = errors.New("invalid duration")
)

// kindError is err, matching a sentinel with errors.Is without repeating
// the sentinel's words in the message.
type kindError struct{ kind, err error }

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }
