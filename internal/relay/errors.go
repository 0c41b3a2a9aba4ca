package relay

import "errors"

// ErrIdle is returned by Pipe when it closed the connection because neither
// direction moved a byte for Options.Idle.
var ErrIdle = errors.New("relay: idle timeout")
