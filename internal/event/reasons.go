package event

import "slices"

// reasons lists every Reason constant, for configuration checks.
var reasons = []string{
	ReasonUnknownProtocol, ReasonProtocolRefused, ReasonFirstBytesTimeout,
	ReasonTLSHandshake, ReasonUnknownSNI, ReasonTLSRequired, ReasonConnLimit,
	ReasonUnknownHost, ReasonMissingHost, ReasonBadRequest, ReasonDeniedPath,
	ReasonUnknownDomain, ReasonBindRefused, ReasonMalformedBind, ReasonDial,
	ReasonStatus, ReasonAuthChallenge, ReasonInvalidCreds, ReasonBindFailed,
	ReasonOK, ReasonAdminAuth,
	ReasonFlood, ReasonScanner, ReasonNetwork, ReasonCallLimit, ReasonDestination, ReasonChallenge,
	ReasonPeerDenied,
}

// Reasons returns every reason the gateway emits, sorted.
func Reasons() []string {
	out := slices.Clone(reasons)
	slices.Sort(out)
	return out
}

// KnownReason reports whether r is one of the Reason constants.
func KnownReason(r string) bool { return slices.Contains(reasons, r) }
