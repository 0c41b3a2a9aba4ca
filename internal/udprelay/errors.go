package udprelay

import "errors"

var (
	// ErrClosed is returned by ServePacket after Shutdown or Close, or after
	// an earlier ServePacket stopped.
	ErrClosed = errors.New("udprelay: relay closed")
	// ErrServing is returned by a second ServePacket call: one Relay serves
	// one socket.
	ErrServing = errors.New("udprelay: relay is already serving")
)
