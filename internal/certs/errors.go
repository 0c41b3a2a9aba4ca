package certs

import "errors"

// ErrUnknownSNI is wrapped by the error a strict listener's GetCertificate
// returns when the client named no server, or a server the store has no
// certificate for. Callers tell an SNI refusal from other handshake failures
// with errors.Is(err, ErrUnknownSNI).
var ErrUnknownSNI = errors.New("certs: no certificate for server name")
