package certs

import (
	"errors"
	"fmt"
)

// ErrUnknownSNI is wrapped by the error a strict listener's GetCertificate
// returns when the client named no server, or a server the store has no
// certificate for. Callers tell an SNI refusal from other handshake failures
// with errors.Is(err, ErrUnknownSNI).
var ErrUnknownSNI = errors.New("certs: no certificate for server name")

// PairError is a problem with one of the pairs given to Load. Index is the
// pair's position, so callers can point at the configuration that named it.
type PairError struct {
	Index int    // position in the slice given to Load
	Name  string // the pair's name, "" when it has none
	Err   error
}

func (e *PairError) Error() string {
	if e.Name == "" {
		return fmt.Sprintf("certificate #%d: %v", e.Index+1, e.Err)
	}
	return fmt.Sprintf("certificate %q: %v", e.Name, e.Err)
}

// Unwrap returns the underlying problem.
func (e *PairError) Unwrap() error { return e.Err }
