package turn

import "errors"

// Errors returned by New, Serve and the relay address generator.
var (
	ErrConfig         = errors.New("turn: invalid config")
	ErrNoSockets      = errors.New("turn: Serve needs at least one socket")
	ErrServing        = errors.New("turn: Serve called twice")
	ErrClosed         = errors.New("turn: server closed")
	ErrTCPAllocation  = errors.New("turn: TCP allocations (RFC 6062) are not supported")
	errUnknownAddress = errors.New("turn: address without IP")
)
