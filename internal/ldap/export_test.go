package ldap

import "testing"

// LongForm is longForm for the external tests.
func LongForm(t testing.TB, b []byte) []byte { return longForm(t, b) }
