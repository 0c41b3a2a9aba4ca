package sippolicy

import "errors"

// ErrConfig is wrapped by every configuration error: NewFlood, Reconfigure,
// NewTenants, NewCalls, NewChallenges and the Validate methods.
var ErrConfig = errors.New("sippolicy: invalid config")
