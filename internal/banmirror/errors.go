package banmirror

import "errors"

// ErrInvalid reports bad Options.
var ErrInvalid = errors.New("banmirror: invalid options")
