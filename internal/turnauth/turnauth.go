package turnauth

import (
	"crypto/hmac"
	"crypto/md5"  //nolint:gosec // RFC 5389 long-term credentials are defined with MD5
	"crypto/sha1" //nolint:gosec // the TURN REST API is defined with HMAC-SHA1
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits of Issue and Keys.
const (
	MinSecretLen = 16                 // bytes per secret
	MinTTL       = time.Minute        // shortest credential Issue mints
	MaxTTL       = 7 * 24 * time.Hour // longest credential Issue mints
	// MaxClockSkew is how far the issuer's clock may run ahead of ours: Keys
	// rejects an expiry beyond now+MaxTTL+MaxClockSkew as ErrUnknownUser.
	MaxClockSkew = 5 * time.Minute
	MaxUserLen   = 128 // bytes in the user part of a username
	maxExpiryLen = 19  // decimal digits of a positive int64
)

// Secrets holds the shared secrets of the TURN REST API, in order: the first
// signs new credentials, all of them verify (rotation: put the new secret
// first, drop the old one once its credentials have expired). It is immutable
// and safe for concurrent use.
type Secrets struct {
	secrets [][]byte
}

// NewSecrets returns Secrets for secrets (copied): at least one, each at least
// MinSecretLen bytes, no two equal. Errors name secrets by index, never by
// content.
func NewSecrets(secrets [][]byte) (*Secrets, error) {
	if len(secrets) == 0 {
		return nil, errors.New("turnauth: no secrets")
	}
	var errs []error
	for i, s := range secrets {
		if len(s) < MinSecretLen {
			errs = append(errs, fmt.Errorf("secret %d: %d bytes, need at least %d", i, len(s), MinSecretLen))
		}
		for j := range i {
			if subtle.ConstantTimeCompare(s, secrets[j]) == 1 {
				errs = append(errs, fmt.Errorf("secret %d: duplicate of secret %d", i, j))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("turnauth: %w", errors.Join(errs...))
	}
	s := &Secrets{secrets: make([][]byte, len(secrets))}
	for i, sec := range secrets {
		s.secrets[i] = append([]byte(nil), sec...)
	}
	return s, nil
}

// Issue mints a credential for user valid until now+ttl (truncated to the
// second): username "<unix-expiry>:<user>" and its password, signed with the
// first secret. user must be 1..MaxUserLen printable ASCII characters other
// than space and ':'; ttl must lie in [MinTTL, MaxTTL].
func (s *Secrets) Issue(user string, now time.Time, ttl time.Duration) (username, password string, err error) {
	if s == nil || len(s.secrets) == 0 {
		return "", "", errors.New("turnauth: no secrets")
	}
	if !validUser(user, false) {
		return "", "", fmt.Errorf("turnauth: user %q: need 1..%d printable ASCII characters without space or ':'", user, MaxUserLen)
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return "", "", fmt.Errorf("turnauth: ttl %s outside [%s, %s]", ttl, MinTTL, MaxTTL)
	}
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	return username, sign(s.secrets[0], username), nil
}

// Keys returns the RFC 5389 long-term keys, LongTermKey(username, realm,
// password), for the password each secret would give username, in secret
// order; the STUN/TURN server accepts a request whose MESSAGE-INTEGRITY matches
// one of them. It first checks the username: ErrMalformed for a bad form, an
// *ExpiredError (ErrExpired) when the expiry has passed, ErrUnknownUser when
// the expiry lies beyond now+MaxTTL+MaxClockSkew. An expiry equal to now is
// still valid.
func (s *Secrets) Keys(username, realm string, now time.Time) ([][]byte, error) {
	if err := s.checkUsername(username, now); err != nil {
		return nil, err
	}
	keys := make([][]byte, len(s.secrets))
	for i, sec := range s.secrets {
		keys[i] = LongTermKey(username, realm, sign(sec, username))
	}
	return keys, nil
}

// Verify checks a username/password pair directly (for tools and tests; the
// TURN server uses Keys). Besides the errors of Keys it returns ErrUnknownUser
// when the password matches none of the secrets. The comparison is constant
// time and tries every secret.
func (s *Secrets) Verify(username, password string, now time.Time) error {
	if err := s.checkUsername(username, now); err != nil {
		return err
	}
	match := 0
	for _, sec := range s.secrets {
		match |= subtle.ConstantTimeCompare([]byte(sign(sec, username)), []byte(password))
	}
	if match != 1 {
		return fmt.Errorf("%w: password matches no secret", ErrUnknownUser)
	}
	return nil
}

// LongTermKey returns MD5(username ":" realm ":" password), the long-term
// credential key of RFC 5389 section 15.4 (RFC 8489 section 18.5.1.1 with
// MD5). The inputs are used as given (no SASLprep).
func LongTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // mandated by RFC 5389
	h.Write([]byte(username))
	h.Write([]byte{':'})
	h.Write([]byte(realm))
	h.Write([]byte{':'})
	h.Write([]byte(password))
	return h.Sum(nil)
}

// checkUsername checks the form and expiry of a REST username.
func (s *Secrets) checkUsername(username string, now time.Time) error {
	if s == nil || len(s.secrets) == 0 {
		return errors.New("turnauth: no secrets")
	}
	ts, user, found := strings.Cut(username, ":")
	if !found || len(ts) == 0 || len(ts) > maxExpiryLen || !allDigits(ts) || !validUser(user, true) {
		return ErrMalformed
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrMalformed // out of range
	}
	// Compare in seconds first: time.Unix overflows for expiries near
	// math.MaxInt64, so it is only called on a bounded value.
	if sec > now.Add(MaxTTL+MaxClockSkew).Unix() {
		return fmt.Errorf("%w: expiry %d is more than %s ahead", ErrUnknownUser, sec, MaxTTL+MaxClockSkew)
	}
	if expiry := time.Unix(sec, 0); now.After(expiry) {
		return &ExpiredError{Expiry: expiry}
	}
	return nil
}

// sign returns base64(HMAC-SHA1(secret, username)).
func sign(secret []byte, username string) string {
	m := hmac.New(sha1.New, secret)
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// validUser reports whether u is 1..MaxUserLen printable ASCII characters
// other than space, and other than ':' unless colon is set.
func validUser(u string, colon bool) bool {
	if len(u) == 0 || len(u) > MaxUserLen {
		return false
	}
	for i := range len(u) {
		c := u[i]
		if c <= ' ' || c > '~' || (c == ':' && !colon) {
			return false
		}
	}
	return true
}

// Len returns the number of secrets (0 for nil).
func (s *Secrets) Len() int {
	if s == nil {
		return 0
	}
	return len(s.secrets)
}
