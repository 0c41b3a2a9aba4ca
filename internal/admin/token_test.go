package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestEnsureToken(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	tok, created, err := EnsureToken(ctx, st)
	if err != nil || !created {
		t.Fatalf("EnsureToken = %q, %v, %v", tok, created, err)
	}
	raw, ok := strings.CutPrefix(tok, "pbxg_")
	if !ok {
		t.Fatalf("token %q lacks the pbxg_ prefix", tok)
	}
	if b, err := base64.RawURLEncoding.DecodeString(raw); err != nil || len(b) != 32 {
		t.Fatalf("token body %q: %d bytes, %v", raw, len(b), err)
	}
	stored := string(st.meta[TokenMetaKey])
	if stored != HashToken(tok) || !strings.HasPrefix(stored, "sha256:") || len(stored) != len("sha256:")+64 {
		t.Fatalf("stored %q, want the hash of the token", stored)
	}
	if strings.Contains(stored, raw) {
		t.Fatal("the store holds the token itself")
	}

	again, created, err := EnsureToken(ctx, st)
	if err != nil || created || again != "" {
		t.Fatalf("second EnsureToken = %q, %v, %v; want nothing new", again, created, err)
	}
	if string(st.meta[TokenMetaKey]) != stored {
		t.Fatal("second EnsureToken changed the stored hash")
	}

	// A stored value that is no hash is replaced.
	st.meta[TokenMetaKey] = []byte("sha256:zz")
	tok2, created, err := EnsureToken(ctx, st)
	if err != nil || !created || tok2 == "" || tok2 == tok {
		t.Fatalf("EnsureToken over a bad hash = %q, %v, %v", tok2, created, err)
	}
	v, err := LoadVerifier(ctx, st)
	if err != nil || !v.Verify(tok2) || v.Verify(tok) {
		t.Fatalf("verifier after replacement: %v", err)
	}
}

func TestTokenStoreErrors(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.err = errBoom
	if _, _, err := EnsureToken(ctx, st); !errors.Is(err, errBoom) {
		t.Errorf("EnsureToken = %v", err)
	}
	if _, err := RotateToken(ctx, st); !errors.Is(err, errBoom) {
		t.Errorf("RotateToken = %v", err)
	}
	if _, err := LoadVerifier(ctx, st); !errors.Is(err, errBoom) {
		t.Errorf("LoadVerifier = %v", err)
	}
	st.err = nil
	if _, err := LoadVerifier(ctx, st); !errors.Is(err, ErrNoToken) {
		t.Errorf("LoadVerifier on an empty store = %v, want ErrNoToken", err)
	}
	st.meta[TokenMetaKey] = []byte("md5:abc")
	if _, err := LoadVerifier(ctx, st); !errors.Is(err, ErrTokenHash) {
		t.Errorf("LoadVerifier on a bad hash = %v, want ErrTokenHash", err)
	}
}

func TestRotateToken(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	seen := map[string]bool{}
	for range 20 {
		tok, err := RotateToken(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		if seen[tok] {
			t.Fatalf("token %q made twice", tok)
		}
		seen[tok] = true
		if string(st.meta[TokenMetaKey]) != HashToken(tok) {
			t.Fatal("stored hash is not the new token's")
		}
	}
}

func TestHashVerifier(t *testing.T) {
	var zero HashVerifier
	if zero.Verify("") || zero.Verify("pbxg_x") {
		t.Fatal("zero verifier accepts a token")
	}
	v := new(HashVerifier)
	if err := v.Set(HashToken("pbxg_secret")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token string
		want  bool
	}{
		{"pbxg_secret", true},
		{"pbxg_secreT", false},
		{"pbxg_secret ", false},
		{"", false},
		{"sha256:" + HashToken("pbxg_secret")[7:], false}, // the hash is not the token
	}
	for _, tt := range tests {
		if got := v.Verify(tt.token); got != tt.want {
			t.Errorf("Verify(%q) = %v, want %v", tt.token, got, tt.want)
		}
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + strings.Repeat("g", 64), "sha1:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("a", 63)} {
		if err := v.Set(bad); !errors.Is(err, ErrTokenHash) {
			t.Errorf("Set(%q) = %v, want ErrTokenHash", bad, err)
		}
	}
	if !v.Verify("pbxg_secret") {
		t.Fatal("a refused Set changed the verifier")
	}
	if err := v.Set(strings.ToUpper(HashToken("pbxg_other")[7:])); err == nil {
		t.Fatal("Set accepted a hash without the sha256: prefix")
	}
	if err := v.Set("sha256:" + strings.ToUpper(HashToken("pbxg_other")[7:])); err != nil || !v.Verify("pbxg_other") {
		t.Fatalf("upper-case hex: %v", err)
	}
}
