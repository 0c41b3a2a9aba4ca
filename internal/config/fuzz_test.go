package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v4"
)

// FuzzParse feeds arbitrary bytes to Parse. Invariants: no panic; a failure
// is made of located Problems matching ErrInvalid; a success has no key the
// YAML decoder's own strict mode would reject, yields warnings without
// panicking, and prints back (Marshal) to a file that parses to the same
// Config. The committed corpus is in testdata/fuzz/FuzzParse; the examples
// and the base test configuration are added as seeds here.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(baseYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not match ErrInvalid: %v", err)
			}
			probs := Problems(err)
			if len(probs) == 0 {
				t.Fatalf("error carries no Problem: %v", err)
			}
			for _, p := range probs {
				if p.Message == "" || p.File != "fuzz.yaml" {
					t.Fatalf("malformed problem %#v", p)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil Config without error")
		}
		var strict Config
		if err := yaml.Load(data, &strict, yaml.WithKnownFields()); err != nil {
			t.Fatalf("Parse accepted what strict decoding refuses: %v", err)
		}
		_ = c.Warnings()
		roundTrip(t, c)
	})
}
