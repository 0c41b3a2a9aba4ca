package turn

import "errors"

// Errors returned by the server and its relay address generator.
var (
	ErrConfig         = errors.New("turn: invalid config")
	ErrClosed         = errors.New("turn: server closed")
	ErrNoRelayFamily  = errors.New("turn: no relay address of the requested family")
	ErrNoPort         = errors.New("turn: no relay port")
	ErrPeerDenied     = errors.New("turn: peer denied")
	ErrNoAllocation   = errors.New("turn: no such allocation")
	errUnknownAddress = errors.New("turn: address without IP")
)
