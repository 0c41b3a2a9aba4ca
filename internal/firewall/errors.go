package firewall

import "errors"

// ErrInvalidSpec wraps every problem Validate finds in a Spec.
var ErrInvalidSpec = errors.New("firewall: invalid spec")
