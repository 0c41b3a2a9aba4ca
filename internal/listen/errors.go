package listen

import "errors"

var (
	// ErrServerClosed is returned by Serve after Shutdown (or after an
	// earlier Serve stopped because its context ended).
	ErrServerClosed = errors.New("listen: server closed")
	// ErrServing is returned by a second Serve call: one Server serves one
	// listener.
	ErrServing = errors.New("listen: server is already serving")
	// ErrNoCloseWrite is returned by CloseWrite when the underlying
	// connection cannot half-close.
	ErrNoCloseWrite = errors.New("listen: connection does not support CloseWrite")
)
