package kernelbl

import "errors"

var (
	// ErrInvalidPrefix: an entry's prefix is not a valid IPv4 or IPv6 prefix.
	ErrInvalidPrefix = errors.New("kernelbl: invalid prefix")
	// ErrClosed: the Sync was closed.
	ErrClosed = errors.New("kernelbl: closed")
)
