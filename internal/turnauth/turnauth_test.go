package turnauth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	secretA = []byte("pbxgate-test-secret-0123456789")
	secretB = []byte("another-secret-for-rotation!")
	// t0 is 1700000000 (2023-11-14T22:13:20Z).
	t0 = time.Unix(1700000000, 0)
)

func mustSecrets(t testing.TB, secrets ...[]byte) *Secrets {
	t.Helper()
	s, err := NewSecrets(secrets)
	if err != nil {
		t.Fatalf("NewSecrets: %v", err)
	}
	return s
}

// TestKnownVector checks against values computed independently in the shell
// with OpenSSL 3.0:
//
//	printf %s '1700000000:alice' | openssl dgst -sha1 -hmac 'pbxgate-test-secret-0123456789' -binary | base64
//	  -> sfQVNjSy+7Ymz/+VHht5fQ6Id5I=
//	printf %s '1700000000:alice' | openssl dgst -sha1 -hmac 'another-secret-for-rotation!' -binary | base64
//	  -> U5fPBKGGWutpM/iEdmeB9XOpzPc=
//	printf %s '1700000000:alice:example.org:sfQVNjSy+7Ymz/+VHht5fQ6Id5I=' | openssl dgst -md5
//	  -> 3c80b91df7798cae37bda02f93234660
func TestKnownVector(t *testing.T) {
	const (
		username = "1700000000:alice"
		passA    = "sfQVNjSy+7Ymz/+VHht5fQ6Id5I="
		passB    = "U5fPBKGGWutpM/iEdmeB9XOpzPc="
		keyA     = "3c80b91df7798cae37bda02f93234660"
	)
	s := mustSecrets(t, secretA)
	u, p, err := s.Issue("alice", t0.Add(-time.Hour), time.Hour)
	if err != nil || u != username || p != passA {
		t.Fatalf("Issue = %q %q %v, want %q %q", u, p, err, username, passA)
	}
	if got := hex.EncodeToString(LongTermKey(username, "example.org", passA)); got != keyA {
		t.Fatalf("LongTermKey = %s, want %s", got, keyA)
	}
	if got := sign(secretB, username); got != passB {
		t.Fatalf("sign(secretB) = %s, want %s", got, passB)
	}
	keys, err := mustSecrets(t, secretA, secretB).Keys(username, "example.org", t0.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || hex.EncodeToString(keys[0]) != keyA ||
		!bytes.Equal(keys[1], LongTermKey(username, "example.org", passB)) {
		t.Fatalf("Keys = %x", keys)
	}
}

func TestRoundTrip(t *testing.T) {
	s := mustSecrets(t, secretA, secretB)
	for _, ttl := range []time.Duration{MinTTL, time.Hour, MaxTTL} {
		t.Run(ttl.String(), func(t *testing.T) {
			u, p, err := s.Issue("alice@example.com", t0, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if want := strconv.FormatInt(t0.Add(ttl).Unix(), 10) + ":alice@example.com"; u != want {
				t.Fatalf("username %q, want %q", u, want)
			}
			keys, err := s.Keys(u, "pbx.example", t0)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(keys[0], LongTermKey(u, "pbx.example", p)) {
				t.Fatal("first key does not match LongTermKey of the issued password")
			}
			if bytes.Equal(keys[1], keys[0]) {
				t.Fatal("second secret gave the same key")
			}
			if err := s.Verify(u, p, t0); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// Valid up to and including the expiry second, expired after.
			exp := t0.Add(ttl)
			if _, err := s.Keys(u, "pbx.example", exp); err != nil {
				t.Fatalf("Keys at expiry: %v", err)
			}
			_, err = s.Keys(u, "pbx.example", exp.Add(time.Second))
			var ee *ExpiredError
			if !errors.Is(err, ErrExpired) || !errors.As(err, &ee) || !ee.Expiry.Equal(exp) {
				t.Fatalf("Keys after expiry: %v, want ErrExpired at %s", err, exp)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old := mustSecrets(t, secretA)
	u, p, err := old.Issue("bob", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rotated := mustSecrets(t, secretB, secretA)
	if err := rotated.Verify(u, p, t0); err != nil {
		t.Fatalf("old credential after rotation: %v", err)
	}
	keys, err := rotated.Keys(u, "r", t0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(keys[1], LongTermKey(u, "r", p)) || bytes.Equal(keys[0], LongTermKey(u, "r", p)) {
		t.Fatal("old credential's key is not (only) the second key")
	}
	_, p2, _ := rotated.Issue("bob", t0, time.Hour)
	if p2 == p {
		t.Fatal("rotated Secrets still signs with the old secret")
	}
	dropped := mustSecrets(t, secretB)
	if err := dropped.Verify(u, p, t0); !errors.Is(err, ErrUnknownUser) {
		t.Fatalf("old credential after dropping its secret: %v, want ErrUnknownUser", err)
	}
}

func TestKeysErrors(t *testing.T) {
	s := mustSecrets(t, secretA)
	now := t0
	long := strings.Repeat("u", MaxUserLen)
	tests := []struct {
		username string
		want     error // nil: accepted
	}{
		{"1700000000:u", nil},
		{"1700000000:" + long, nil},
		{"0001700000000:u", nil}, // leading zeros: the HMAC covers the exact string
		{"1700000000:a:b", nil},  // split at the first ':'; user "a:b"
		{"1700000000:" + long + "x", ErrMalformed},
		{"abc", ErrMalformed},
		{"", ErrMalformed},
		{":user", ErrMalformed},
		{"123:", ErrMalformed},
		{"-5:u", ErrMalformed},
		{"+5:u", ErrMalformed},
		{"1e9:u", ErrMalformed},
		{" 1700000000:u", ErrMalformed},
		{"1700000000:u v", ErrMalformed},
		{"1700000000:ü", ErrMalformed},
		{"1700000000:u\x00", ErrMalformed},
		{"99999999999999999999:u", ErrMalformed},  // 20 digits
		{"9223372036854775808:u", ErrMalformed},   // int64 overflow, 19 digits
		{"9223372036854775807:u", ErrUnknownUser}, // far future
		{"1699999999:u", ErrExpired},
		{"0:u", ErrExpired},
		{"1700604800:u", nil},            // now + 7d
		{"1700605100:u", nil},            // now + 7d + 5m
		{"1700605101:u", ErrUnknownUser}, // one second beyond
	}
	for _, tt := range tests {
		t.Run(tt.username, func(t *testing.T) {
			keys, err := s.Keys(tt.username, "realm", now)
			if tt.want == nil {
				if err != nil || len(keys) != 1 {
					t.Fatalf("Keys = %d keys, %v; want 1 key", len(keys), err)
				}
				return
			}
			if !errors.Is(err, tt.want) || keys != nil {
				t.Fatalf("Keys = %d keys, %v; want %v", len(keys), err, tt.want)
			}
			if err := s.Verify(tt.username, "x", now); !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestVerifyWrongPassword(t *testing.T) {
	s := mustSecrets(t, secretA, secretB)
	u, p, err := s.Issue("carol", t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", p[:len(p)-1], p + "=", strings.ToLower(p), "sfQVNjSy+7Ymz/+VHht5fQ6Id5I="} {
		if err := s.Verify(u, bad, t0); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("Verify(%q) = %v, want ErrUnknownUser", bad, err)
		}
	}
	// A password for another user does not verify this one.
	u2, _, _ := s.Issue("dave", t0, time.Hour)
	if err := s.Verify(u2, p, t0); !errors.Is(err, ErrUnknownUser) {
		t.Errorf("Verify(other user's password) = %v", err)
	}
}

func TestIssueErrors(t *testing.T) {
	s := mustSecrets(t, secretA)
	tests := []struct {
		name string
		user string
		ttl  time.Duration
		want string
	}{
		{"empty user", "", time.Hour, "user"},
		{"colon", "a:b", time.Hour, "user"},
		{"space", "a b", time.Hour, "user"},
		{"non-ascii", "jörg", time.Hour, "user"},
		{"control", "a\nb", time.Hour, "user"},
		{"too long", strings.Repeat("u", MaxUserLen+1), time.Hour, "user"},
		{"ttl short", "u", MinTTL - time.Second, "ttl"},
		{"ttl long", "u", MaxTTL + time.Second, "ttl"},
		{"ttl negative", "u", -time.Hour, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, p, err := s.Issue(tt.user, t0, tt.ttl)
			if err == nil || !strings.Contains(err.Error(), tt.want) || u != "" || p != "" {
				t.Fatalf("Issue = %q %q %v, want error about %s", u, p, err, tt.want)
			}
		})
	}
	if _, _, err := s.Issue(strings.Repeat("u", MaxUserLen), t0, time.Hour); err != nil {
		t.Fatalf("Issue(max-length user): %v", err)
	}
}

func TestNewSecrets(t *testing.T) {
	short := []byte("fifteen-bytes!!")
	tests := []struct {
		name    string
		secrets [][]byte
		want    []string // substrings of the error; nil: ok
	}{
		{"one", [][]byte{secretA}, nil},
		{"two", [][]byte{secretA, secretB}, nil},
		{"none", nil, []string{"no secrets"}},
		{"short", [][]byte{secretA, short}, []string{"secret 1: 15 bytes"}},
		{"duplicate", [][]byte{secretA, secretB, append([]byte(nil), secretA...)}, []string{"secret 2: duplicate of secret 0"}},
		{"all reported", [][]byte{short, secretA, secretA}, []string{"secret 0", "secret 2: duplicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSecrets(tt.secrets)
			if tt.want == nil {
				if err != nil || s == nil {
					t.Fatalf("NewSecrets = %v, %v", s, err)
				}
				return
			}
			if err == nil {
				t.Fatal("NewSecrets succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), string(secretA)) {
				t.Errorf("error %q reveals a secret", err)
			}
		})
	}
	// NewSecrets copies: changing the caller's slice does not change signing.
	in := append([]byte(nil), secretA...)
	s := mustSecrets(t, in)
	in[0] ^= 0xff
	if _, p, _ := s.Issue("alice", t0.Add(-time.Hour), time.Hour); p != "sfQVNjSy+7Ymz/+VHht5fQ6Id5I=" {
		t.Fatal("Secrets shares memory with the caller's secret")
	}
}

func TestZeroSecrets(t *testing.T) {
	var nilS *Secrets
	for name, s := range map[string]*Secrets{"nil": nilS, "zero": {}} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := s.Issue("u", t0, time.Hour); err == nil {
				t.Error("Issue succeeded")
			}
			if _, err := s.Keys("1700000001:u", "r", t0); err == nil {
				t.Error("Keys succeeded")
			}
			if err := s.Verify("1700000001:u", "p", t0); err == nil {
				t.Error("Verify succeeded")
			}
		})
	}
}
