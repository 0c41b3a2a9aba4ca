package firewall

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name, old, new, want string
	}{
		{"equal", "a\nb\n", "a\nb\n", ""},
		{"from empty", "", "a\nb\n", "+a\n+b\n"},
		{"to empty", "a\n", "", "-a\n"},
		{"change in middle", "1\n2\n3\n4\n5\n6\n7\n", "1\n2\n3\nX\n5\n6\n7\n", " 2\n 3\n-4\n+X\n 5\n 6\n"},
		{"two hunks", "1\n2\n3\n4\n5\n6\n7\n8\n9\n", "0\n1\n2\n3\n4\n5\n6\n7\n8\n9\nZ\n",
			"+0\n 1\n 2\n...\n 8\n 9\n+Z\n"},
		{"insert and delete", "a\nb\nc\n", "a\nc\nd\n", " a\n-b\n c\n+d\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Diff(tc.old, tc.new); got != tc.want {
				t.Errorf("Diff =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// Applying the diff's - and + lines to old must give new.
func TestDiffReconstructs(t *testing.T) {
	a, _ := Render(goldenSpecs[1].spec)
	b, _ := Render(goldenSpecs[4].spec)
	ops := diffLines(splitLines(a), splitLines(b))
	var oldL, newL []string
	for _, op := range ops {
		if op.kind != '+' {
			oldL = append(oldL, op.line)
		}
		if op.kind != '-' {
			newL = append(newL, op.line)
		}
	}
	if strings.Join(oldL, "\n")+"\n" != a || strings.Join(newL, "\n")+"\n" != b {
		t.Error("diff ops do not reconstruct both inputs")
	}
	// Too long for the LCS: shown as a full replacement, still correct.
	long := strings.Repeat("x\n", maxDiffLines+1)
	if d := Diff("a\n"+long, "b\n"+long+"c\n"); !strings.HasPrefix(d, "-a\n-x\n") || !strings.HasSuffix(d, "+x\n+c\n") ||
		strings.Count(d, "\n") != 2*(maxDiffLines+1)+3 {
		t.Errorf("long diff = %.60q...", d)
	}
	// A long common suffix is stripped before the LCS.
	if d := Diff("a\n"+long, "b\n"+long); d != "-a\n+b\n x\n x\n" {
		t.Errorf("diff with a long common suffix = %.60q", d)
	}
}
