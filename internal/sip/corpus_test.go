package sip

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz from testdata/messages and testdata/rfc4475")

// TestUpdateCorpus checks that the committed seed corpora are the ones made
// from testdata/messages and testdata/rfc4475; with -update-corpus it
// rewrites them (go test -run TestUpdate ./internal/sip -args -update-corpus).
func TestUpdateCorpus(t *testing.T) {
	s := seeds(t)
	names := sortedNames(s)
	for _, name := range names {
		writeSeed(t, "FuzzParse", name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s[name]))
	}
	for i, name := range names {
		// Streams: the message twice, keep-alives around it, odd seeds for
		// small MaxMessage limits.
		b := s[name]
		stream := append(append(append([]byte("\r\n\r\n"), b...), "\r\n"...), b...)
		writeSeed(t, "FuzzFramer", name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint64(%d)\n", stream, i*2+i%3/2))
	}
}

func sortedNames(m map[string][]byte) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// writeSeed writes one seed file with -update-corpus; otherwise it fails
// the test when the committed file differs.
func writeSeed(t *testing.T, fuzzer, name, data string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzer)
	path := filepath.Join(dir, name)
	if !*updateCorpus {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Errorf("%s is missing or out of date: run go test -run TestUpdate ./internal/sip -args -update-corpus", path)
		}
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
