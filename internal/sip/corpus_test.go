package sip

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz from testdata/messages and testdata/rfc4475")

// TestUpdateCorpus writes the committed seed corpora when run with
// -update-corpus (go test -run TestUpdateCorpus -update-corpus ./internal/sip).
func TestUpdateCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	s := seeds(t)
	for name, b := range s {
		writeSeed(t, "FuzzParse", name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b))
	}
	i := 0
	for name, b := range s {
		// Streams: the message twice, keep-alives around it, odd seeds for
		// small MaxMessage limits.
		stream := append(append(append([]byte("\r\n\r\n"), b...), "\r\n"...), b...)
		writeSeed(t, "FuzzFramer", name, fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nuint64(%d)\n", stream, i*2+i%3/2))
		i++
	}
}

func writeSeed(t *testing.T, fuzzer, name, data string) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", fuzzer)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
