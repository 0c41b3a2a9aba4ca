package turnauth

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by Keys and Verify; test with errors.Is.
var (
	// ErrMalformed: the username is not "<unix-expiry>:<user>" with a decimal
	// expiry and a user of 1..128 printable ASCII characters other than space.
	ErrMalformed = errors.New("turnauth: malformed REST username")
	// ErrExpired: the username's expiry has passed. The error is an
	// *ExpiredError carrying the expiry.
	ErrExpired = errors.New("turnauth: REST credential expired")
	// ErrUnknownUser: none of our secrets can have made this credential —
	// its expiry lies further ahead than any issuer may grant (MaxTTL plus
	// MaxClockSkew), or (Verify) the password matches none of the secrets.
	ErrUnknownUser = errors.New("turnauth: unknown REST user")
)

// ExpiredError reports an expired credential; it matches ErrExpired.
type ExpiredError struct {
	Expiry time.Time // the expiry encoded in the username
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("%v at %s", ErrExpired, e.Expiry.UTC().Format(time.RFC3339))
}

func (e *ExpiredError) Unwrap() error { return ErrExpired }
