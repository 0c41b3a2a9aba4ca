package nft

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseTables(t *testing.T) {
	listing := "table ip filter { # handle 1\n\tchain INPUT {\n\t}\n}\ntable inet pbxgate {\n}\ntable ip filter {\n}\n  table inet nested {\n}\ntable bogus\n"
	got := ParseTables(listing)
	if want := []string{"ip filter", "inet pbxgate"}; !slices.Equal(got, want) {
		t.Errorf("ParseTables = %q, want %q", got, want)
	}
}

// fakeNft writes a shell script standing in for nft.
func fakeNft(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nft")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExecErrors(t *testing.T) {
	tests := []struct {
		name, body string
		call       func(*Exec) error
		check      func(t *testing.T, err error)
	}{
		{"stderr carried", `echo "Error: syntax error, unexpected junk" >&2; exit 1`,
			func(e *Exec) error { return e.Check("junk") },
			func(t *testing.T, err error) {
				var ce *CmdError
				if !errors.As(err, &ce) || ce.Stderr != "Error: syntax error, unexpected junk" || !strings.Contains(err.Error(), "nft check:") {
					t.Errorf("err = %v", err)
				}
			}},
		{"script on stdin", `[ "$1 $2 $3" = "-f - " ] || exit 3; read -r line; [ "$line" = "flush table inet pbxgate" ] || exit 4`,
			func(e *Exec) error { return e.Apply("flush table inet pbxgate\n") },
			func(t *testing.T, err error) {
				if err != nil {
					t.Errorf("Apply: %v", err)
				}
			}},
		{"no table", `echo "Error: No such file or directory; did you mean table 'pbxgate_bl' in family inet?" >&2; exit 1`,
			func(e *Exec) error { _, err := e.List(); return err },
			func(t *testing.T, err error) {
				if !errors.Is(err, ErrNoTable) {
					t.Errorf("List = %v, want ErrNoTable", err)
				}
			}},
		{"tables", `[ "$1 $2 $3" = "-t list ruleset" ] || exit 3; printf 'table inet pbxgate {\n}\ntable ip nat {\n}\n'`,
			func(e *Exec) error {
				got, err := e.Tables()
				if err == nil && strings.Join(got, ",") != "inet pbxgate,ip nat" {
					err = errors.New("Tables = " + strings.Join(got, ","))
				}
				return err
			},
			func(t *testing.T, err error) {
				if err != nil {
					t.Error(err)
				}
			}},
		{"timeout", `exec sleep 10`,
			func(e *Exec) error { e.Timeout = 200 * time.Millisecond; return e.Apply("x") },
			func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
					t.Errorf("err = %v, want a timeout", err)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Exec{Path: fakeNft(t, tc.body)}
			start := time.Now()
			tc.check(t, tc.call(e))
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
	if err := (&Exec{Path: filepath.Join(t.TempDir(), "missing")}).Check("x"); err == nil {
		t.Error("missing binary: no error")
	}
}
