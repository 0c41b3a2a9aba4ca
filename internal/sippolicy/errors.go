package sippolicy

import "errors"

// ErrConfig is wrapped by every configuration error NewFlood and
// Reconfigure return.
var ErrConfig = errors.New("sippolicy: invalid config")
