// Package lint holds tests about the shape of the code base itself.
package lint

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryPackageHasADocComment walks cmd/ and internal/ and requires a
// package doc comment that says what the package is, in at least one of
// each package's non-test files.
func TestEveryPackageHasADocComment(t *testing.T) {
	root := filepath.Join("..", "..")
	pkgs := map[string]bool{} // dir → has doc
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			dir := filepath.Dir(path)
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				return err
			}
			has := f.Doc != nil && len(strings.TrimSpace(f.Doc.Text())) > 20
			pkgs[dir] = pkgs[dir] || has
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("found only %d packages; is the walk rooted right?", len(pkgs))
	}
	for dir, has := range pkgs {
		if !has {
			t.Errorf("package %s has no package doc comment saying what it does", dir)
		}
	}
}
