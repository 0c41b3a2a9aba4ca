package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v4"
)

// MaxFileSize is the largest configuration file Load and Parse accept.
const MaxFileSize = 4 << 20

// maxNodes bounds the YAML nodes visited while indexing positions, so that
// aliases cannot make a small file expensive.
const maxNodes = 1 << 20

// Load reads the file at path and parses it (see Parse). File is set to
// path. Errors reading the file are returned wrapped and do not match
// ErrInvalid.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes one YAML document strictly (unknown keys, duplicate keys and
// wrong types are errors), applies the defaults and validates the result.
// file names the source in messages and is stored in Config.File. On error
// the returned Config is nil and the error joins one *Problem per issue, all
// of them, sorted by line; it matches ErrInvalid.
func Parse(data []byte, file string) (*Config, error) {
	c, probs := decode(data, file)
	if c != nil {
		decoded := len(probs)
		more := c.explicitZeros()
		c.ApplyDefaults()
		more = append(more, c.validate()...)
		for _, p := range more {
			if !masked(p, probs[:decoded]) {
				probs = append(probs, p)
			}
		}
	}
	if len(probs) > 0 {
		return nil, joinProblems(probs)
	}
	return c, nil
}

// masked reports whether p is likely a consequence of one of the decoding
// problems: a value that did not decode is zero, and a misspelt key leaves
// the right one missing. Validation problems about the same field, or about
// the mapping holding it, are left out; they show again, if still true, once
// the decoding problem is fixed.
func masked(p *Problem, decoding []*Problem) bool {
	for _, d := range decoding {
		if d.Path == "" {
			continue
		}
		if p.Path == d.Path {
			return true
		}
		if parent := parentPath(d.Path); parent != "" && hasPathPrefix(p.Path, parent) {
			return true
		}
	}
	return false
}

// hasPathPrefix reports whether path is prefix or a field below it.
func hasPathPrefix(path, prefix string) bool {
	rest, ok := strings.CutPrefix(path, prefix)
	return ok && (rest == "" || rest[0] == '.' || rest[0] == '[')
}

// decode turns data into a Config with defaults not yet applied, and the
// problems met decoding. The Config is nil when the document could not be
// read at all (YAML syntax, not a mapping); with it, the problems are about
// single keys and validation can still run.
func decode(data []byte, file string) (*Config, []*Problem) {
	at := func(line int, path, format string, args ...any) []*Problem {
		return []*Problem{{File: file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)}}
	}
	if len(data) > MaxFileSize {
		return nil, at(0, "", "file is larger than %d bytes", MaxFileSize)
	}
	loader, err := yaml.NewLoader(bytes.NewReader(data))
	if err != nil {
		return nil, at(0, "", "%s", yamlMessage(err.Error()))
	}
	var doc yaml.Node
	if err := loader.Load(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, at(0, "", "empty configuration: no listeners and no services (examples/minimal.yaml is the smallest useful one)")
		}
		return nil, yamlProblems(err, file, nil)
	}
	var extra yaml.Node
	switch err := loader.Load(&extra); {
	case err == nil:
		return nil, at(extra.Line, "", "more than one YAML document; a configuration is one document")
	case !errors.Is(err, io.EOF):
		return nil, yamlProblems(err, file, nil)
	}

	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, at(0, "", "empty configuration: no listeners and no services (examples/minimal.yaml is the smallest useful one)")
	}
	if root.Kind != yaml.MappingNode {
		return nil, at(root.Line, "", "the configuration must be a mapping of keys (listeners, services, ...)")
	}

	c := &Config{File: file}
	derr := doc.Load(c, yaml.WithKnownFields())
	var les *yaml.LoadErrors
	if derr != nil && !errors.As(derr, &les) {
		// Not a per-key problem: the decoder gave up (excessive aliasing).
		return nil, yamlProblems(derr, file, nil)
	}

	w := &walker{file: file, idx: newPosIndex(), budget: maxNodes}
	w.walk(root, reflect.TypeFor[Config](), "")
	c.pos = w.idx
	probs := w.probs
	if les != nil {
		unknownAt := make(map[int]bool)
		for _, p := range w.probs {
			unknownAt[p.Line] = true
		}
		for _, p := range yamlProblems(les, file, w.idx) {
			// The walker already said it, with a suggestion.
			if unknownAt[p.Line] && strings.Contains(p.Message, "not found in type") {
				continue
			}
			probs = append(probs, p)
		}
	}
	return c, probs
}

// posIndex maps field paths to where they are written.
type posIndex struct {
	key    map[string]int    // path → line of its key (or sequence item)
	value  map[[2]int]string // line, column of a value node → its path
	byLine map[int]string    // line → deepest path written on it; built on first use
}

func newPosIndex() *posIndex {
	return &posIndex{key: make(map[string]int), value: make(map[[2]int]string)}
}

// line returns the line of path or, when the key is absent, of its nearest
// enclosing key; 0 when nothing encloses it.
func (x *posIndex) line(path string) int {
	if x == nil {
		return 0
	}
	for path != "" {
		if l, ok := x.key[path]; ok {
			return l
		}
		path = parentPath(path)
	}
	return 0
}

// has reports whether path was written in the file.
func (x *posIndex) has(path string) bool {
	if x == nil {
		return false
	}
	_, ok := x.key[path]
	return ok
}

// pathAt returns the path of the value at line:column, or else the deepest
// path written on line.
func (x *posIndex) pathAt(line, col int) string {
	if x == nil || line <= 0 {
		return ""
	}
	if p, ok := x.value[[2]int{line, col}]; ok {
		return p
	}
	if x.byLine == nil {
		x.byLine = make(map[int]string)
		for p, l := range x.key {
			if best, ok := x.byLine[l]; !ok || len(p) > len(best) || len(p) == len(best) && p < best {
				x.byLine[l] = p
			}
		}
	}
	return x.byLine[line]
}

// parentPath strips the last ".key" or "[i]" from path.
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func indexPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// walker indexes positions and reports unknown keys by walking the YAML
// tree alongside the Go types it decodes into. It only descends where the
// schema does, so its depth is bounded by the schema's.
type walker struct {
	file   string
	idx    *posIndex
	probs  []*Problem
	budget int
	fields map[reflect.Type]map[string]reflect.Type
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil {
		return
	}
	if w.budget--; w.budget < 0 {
		if w.budget == -1 {
			w.probs = append(w.probs, &Problem{File: w.file, Line: n.Line, Message: "document too large or too many aliases"})
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := w.structFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				w.walkMerge(v, t, path)
				continue
			}
			ft, ok := fields[k.Value]
			if !ok || k.Kind != yaml.ScalarNode {
				w.unknown(k, path, fields)
				continue
			}
			p := joinPath(path, k.Value)
			w.idx.key[p] = k.Line
			w.idx.value[[2]int{v.Line, v.Column}] = p
			w.walk(v, ft, p)
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			p := indexPath(path, i)
			w.idx.key[p] = item.Line
			w.idx.value[[2]int{item.Line, item.Column}] = p
			w.walk(item, t.Elem(), p)
		}
	}
}

// walkMerge handles "<<: *anchor" and "<<: [*a, *b]".
func (w *walker) walkMerge(v *yaml.Node, t reflect.Type, path string) {
	for v != nil && v.Kind == yaml.AliasNode {
		v = v.Alias
	}
	if v == nil {
		return
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			w.walk(m, t, path)
		}
		return
	}
	w.walk(v, t, path)
}

func (w *walker) unknown(k *yaml.Node, path string, fields map[string]reflect.Type) {
	name := k.Value
	if k.Kind != yaml.ScalarNode {
		name = "(a " + kindName(k.Kind) + ")"
	}
	known := make([]string, 0, len(fields))
	for f := range fields {
		known = append(known, f)
	}
	slices.Sort(known)
	msg := "unknown key; known keys here: " + strings.Join(known, ", ")
	if s := closest(name, known); s != "" {
		msg = fmt.Sprintf("unknown key; did you mean %q?", s)
	}
	w.probs = append(w.probs, &Problem{File: w.file, Line: k.Line, Path: joinPath(path, clip(name, 64)), Message: msg})
}

// structFields maps the YAML keys of struct type t to their field types.
func (w *walker) structFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := w.fields[t]; ok {
		return f
	}
	if w.fields == nil {
		w.fields = make(map[reflect.Type]map[string]reflect.Type)
	}
	f := make(map[string]reflect.Type)
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		f[name] = sf.Type
	}
	w.fields[t] = f
	return f
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// closest returns the known key nearest to s by edit distance, if near
// enough to be a typo.
func closest(s string, known []string) string {
	if len(s) > 64 {
		return ""
	}
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(s), k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// clip shortens s to at most n bytes for quoting in messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// yamlProblems converts a decoder error into problems, locating each on
// its field when idx is known.
func yamlProblems(err error, file string, idx *posIndex) []*Problem {
	var les *yaml.LoadErrors
	if errors.As(err, &les) {
		out := make([]*Problem, 0, len(les.Errors))
		for _, e := range les.Errors {
			out = append(out, loadProblem(e, file, idx))
		}
		return out
	}
	var le *yaml.LoadError
	if errors.As(err, &le) {
		return []*Problem{loadProblem(le, file, idx)}
	}
	return []*Problem{{File: file, Message: yamlMessage(err.Error())}}
}

func loadProblem(e *yaml.LoadError, file string, idx *posIndex) *Problem {
	return &Problem{
		File:    file,
		Line:    e.Mark.Line,
		Path:    idx.pathAt(e.Mark.Line, e.Mark.Column),
		Message: yamlMessage(e.Message),
	}
}

var constructRE = regexp.MustCompile("^cannot construct !!(\\w+)(?: `(.*)`)? into (.+)$")

// yamlMessage rewrites the decoder's messages in the configuration's terms.
func yamlMessage(m string) string {
	for {
		t, ok := strings.CutPrefix(m, "yaml: ")
		if !ok {
			break
		}
		m = t
	}
	sm := constructRE.FindStringSubmatch(m)
	if sm == nil {
		return m
	}
	got := map[string]string{"seq": "a list", "map": "a mapping", "str": "a string",
		"int": "a number", "float": "a number", "bool": "a boolean", "null": "nothing"}[sm[1]]
	if got == "" {
		got = "!!" + sm[1]
	}
	if sm[2] != "" {
		got += fmt.Sprintf(" (%s)", sm[2])
	}
	into := sm[3]
	var want string
	switch {
	case strings.HasPrefix(into, "[]"):
		want = "a list"
	case into == "int" || strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
		want = "a whole number"
	case into == "bool" || into == "*bool":
		want = "true or false"
	case into == "string":
		want = "a single value"
	case strings.HasPrefix(into, "config."):
		want = "a mapping"
	default:
		return m
	}
	return "expected " + want + ", got " + got
}

// maxProblems bounds the problems reported for one file.
const maxProblems = 200

// joinProblems sorts problems by line (problems without a line first) and
// joins them into one error, at most maxProblems of them.
func joinProblems(probs []*Problem) error {
	slices.SortStableFunc(probs, func(a, b *Problem) int { return a.Line - b.Line })
	if n := len(probs); n > maxProblems {
		probs = append(probs[:maxProblems-1:maxProblems-1], &Problem{File: probs[0].File,
			Message: fmt.Sprintf("%d more problems not shown", n-maxProblems+1)})
	}
	errs := make([]error, len(probs))
	for i, p := range probs {
		errs[i] = p
	}
	return errors.Join(errs...)
}
