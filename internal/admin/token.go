package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/pbxgate/pbxgate/internal/store"
)

// TokenMetaKey is the store meta key holding the admin token's hash.
const TokenMetaKey = "admin_token"

// tokenPrefix starts every token, so a leaked one is easy to recognise (and
// to grep for in repositories and logs).
const tokenPrefix = "pbxg_"

const hashPrefix = "sha256:"

// TokenVerifier decides whether a bearer token is the admin token.
// Implementations must be safe for concurrent use.
type TokenVerifier interface {
	Verify(token string) bool
}

// HashToken returns the form a token is stored in: "sha256:" and the hex
// SHA-256 of the token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hashPrefix + hex.EncodeToString(sum[:])
}

// parseHash reads "sha256:<64 hex>".
func parseHash(s string) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	hx, ok := strings.CutPrefix(strings.TrimSpace(s), hashPrefix)
	if !ok || len(hx) != hex.EncodedLen(sha256.Size) {
		return h, ErrTokenHash
	}
	if _, err := hex.Decode(h[:], []byte(hx)); err != nil {
		return h, ErrTokenHash
	}
	return h, nil
}

// newToken returns a fresh token: "pbxg_" and 32 random bytes in unpadded
// base64url.
func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// EnsureToken makes the admin token if the store has none: it stores only
// the token's hash and returns the token itself with created true, for the
// caller to show the operator once. When a valid hash is stored already it
// returns "", false. A stored value that is not a valid hash cannot match any
// token, so it is replaced like a missing one (created true).
func EnsureToken(ctx context.Context, st store.Store) (token string, created bool, err error) {
	v, ok, err := st.GetMeta(ctx, TokenMetaKey)
	if err != nil {
		return "", false, fmt.Errorf("admin: read token hash: %w", err)
	}
	if ok {
		if _, err := parseHash(string(v)); err == nil {
			return "", false, nil
		}
	}
	token, err = RotateToken(ctx, st)
	if err != nil {
		return "", false, err
	}
	return token, true, nil
}

// RotateToken makes a new admin token, stores its hash in place of the old
// one and returns it. Verifiers loaded before keep accepting the old token
// until their Set is called with the new hash (the API's rotate endpoint
// does that for the server's own HashVerifier).
func RotateToken(ctx context.Context, st store.Store) (string, error) {
	token := newToken()
	if err := st.PutMeta(ctx, TokenMetaKey, []byte(HashToken(token))); err != nil {
		return "", fmt.Errorf("admin: store token hash: %w", err)
	}
	return token, nil
}

// HashVerifier accepts the one token whose hash it holds. The zero value
// accepts nothing. It is safe for concurrent use.
type HashVerifier struct {
	hash atomic.Pointer[[sha256.Size]byte]
}

// LoadVerifier returns a verifier for the token hash in the store, or an
// error wrapping ErrNoToken when there is none.
func LoadVerifier(ctx context.Context, st store.Store) (*HashVerifier, error) {
	v, ok, err := st.GetMeta(ctx, TokenMetaKey)
	if err != nil {
		return nil, fmt.Errorf("admin: read token hash: %w", err)
	}
	if !ok {
		return nil, ErrNoToken
	}
	hv := new(HashVerifier)
	if err := hv.Set(string(v)); err != nil {
		return nil, fmt.Errorf("admin: stored %s: %w", TokenMetaKey, err)
	}
	return hv, nil
}

// Set replaces the accepted token by the one with hash (as made by
// HashToken). It takes effect for the next Verify.
func (v *HashVerifier) Set(hash string) error {
	h, err := parseHash(hash)
	if err != nil {
		return err
	}
	v.hash.Store(&h)
	return nil
}

// Verify reports whether token hashes to the held hash. The comparison takes
// the same time wherever the hashes differ.
func (v *HashVerifier) Verify(token string) bool {
	want := v.hash.Load()
	if want == nil || token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}
