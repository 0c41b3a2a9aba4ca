package httpproxy

import (
	"errors"
	"fmt"
)

// ErrBadPath is wrapped by every error [NormalizePath] returns.
var ErrBadPath = errors.New("bad request path")

// ErrBadPattern is wrapped by every pattern error [CompileRules] returns.
var ErrBadPattern = errors.New("bad path pattern")

// ErrConfig is wrapped by every validation error [New] returns.
var ErrConfig = errors.New("invalid http proxy options")

// ErrH2NeedsTLSConn is returned by [Server.ServeConn] for a connection that
// negotiated ALPN "h2" but is not a *tls.Conn: net/http can only hand a
// *tls.Conn to its HTTP/2 server, and answering HTTP/1 to an HTTP/2 client
// would fail anyway. The connection is closed.
var ErrH2NeedsTLSConn = errors.New("httpproxy: connection negotiated h2 but is not a *tls.Conn")

// Path errors are preallocated so that rejecting a path does not allocate.
var (
	errNotOriginForm = fmt.Errorf("%w: not origin-form (must start with \"/\")", ErrBadPath)
	errEncodedSlash  = fmt.Errorf("%w: encoded slash", ErrBadPath)
	errBackslash     = fmt.Errorf("%w: backslash", ErrBadPath)
	errControl       = fmt.Errorf("%w: control byte", ErrBadPath)
	errBadEscape     = fmt.Errorf("%w: bad percent escape", ErrBadPath)
)
