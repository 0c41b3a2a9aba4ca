package fraud

import "errors"

var (
	// ErrInvalid reports a bad argument: an invalid prefix, a negative
	// duration, or a Config that fails validation.
	ErrInvalid = errors.New("invalid")
	// ErrConfigEntry reports an attempt to remove a whitelist entry that
	// comes from the configuration file; edit the file and reload instead.
	ErrConfigEntry = errors.New("entry comes from the configuration file")
	// ErrClosed reports a call on an engine after Close.
	ErrClosed = errors.New("fraud engine closed")
)
