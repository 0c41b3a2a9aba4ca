package turnauth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzKeys feeds any username and realm to Keys: it must not panic, must fail
// only with one of the sentinel errors, and when it succeeds the keys must be
// the long-term keys of the passwords each secret gives, which Verify accepts.
func FuzzKeys(f *testing.F) {
	f.Add("1700000000:alice", "example.org")
	f.Add("1700003600:a:b", "")
	f.Add("99999999999999999999:u", "r")
	f.Add("-5:u", "r")
	f.Add(":", "r")
	s := mustSecrets(f, secretA, secretB)
	now := t0
	f.Fuzz(func(t *testing.T, username, realm string) {
		keys, err := s.Keys(username, realm, now)
		if err != nil {
			kind := sentinel(err)
			if kind == nil {
				t.Fatalf("Keys(%q) error %v is no sentinel", username, err)
			}
			if keys != nil {
				t.Fatalf("Keys(%q) returned keys with error %v", username, err)
			}
			if verr := s.Verify(username, "", now); sentinel(verr) != kind {
				t.Fatalf("Verify(%q) = %v, Keys = %v", username, verr, err)
			}
			return
		}
		if len(keys) != 2 {
			t.Fatalf("Keys(%q) = %d keys, want 2", username, len(keys))
		}
		ts, user, _ := strings.Cut(username, ":")
		if ts == "" || user == "" || len(user) > MaxUserLen {
			t.Fatalf("Keys accepted malformed %q", username)
		}
		for i, sec := range [][]byte{secretA, secretB} {
			p := sign(sec, username)
			if len(keys[i]) != 16 || !bytes.Equal(keys[i], LongTermKey(username, realm, p)) {
				t.Fatalf("Keys(%q)[%d] is not the long-term key of the signed password", username, i)
			}
			if err := s.Verify(username, p, now); err != nil {
				t.Fatalf("Verify(%q) with secret %d: %v", username, i, err)
			}
		}
	})
}

// sentinel returns which of the package's sentinel errors err matches, or nil.
func sentinel(err error) error {
	for _, s := range []error{ErrMalformed, ErrExpired, ErrUnknownUser} {
		if errors.Is(err, s) {
			return s
		}
	}
	return nil
}
