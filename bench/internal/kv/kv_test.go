package kv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestReadAndDerive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "raw")
	os.WriteFile(p, []byte("# comment\na.rps=100\n\nb.rps=50\na.rps=120\nz.rps=0\nname=x\n"), 0o600)
	r, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.Num("a.rps"); !ok || v != 120 {
		t.Errorf("Num(a.rps) = %v, %v; the later line wins", v, ok)
	}
	if _, ok := r.Num("name"); ok {
		t.Error("a word read as a number")
	}
	if v, ok := r.Ratio("a.rps", "b.rps"); !ok || v != 2.4 {
		t.Errorf("Ratio = %v, %v", v, ok)
	}
	if _, ok := r.Ratio("a.rps", "z.rps"); ok {
		t.Error("a ratio over zero")
	}
	if v, ok := r.Diff("a.rps", "b.rps"); !ok || v != 70 {
		t.Errorf("Diff = %v, %v", v, ok)
	}
	os.WriteFile(p, []byte("no equals sign\n"), 0o600)
	if _, err := Read(p); err == nil {
		t.Error("a line without = was accepted")
	}
}

func TestNested(t *testing.T) {
	got := Results{"http.pbxgate.rps": "12.5", "meta.go": "1.26", "rate.basis": "half"}.Nested()
	b, _ := json.Marshal(got)
	want := `{"http":{"pbxgate":{"rps":12.5}},"meta":{"go":"1.26"},"rate":{"basis":"half"}}`
	if string(b) != want {
		t.Fatalf("Nested = %s, want %s", b, want)
	}
}

func TestGroup(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := Group(in); got != want {
			t.Errorf("Group(%d) = %q, want %q", in, got, want)
		}
	}
}
