package config

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Documentation and examples are kept honest by these tests.
//
// Code blocks in docs/configuration.md and README.md follow one convention:
//
//	```yaml            a complete configuration: it must parse and validate.
//	```yaml fragment   part of one, written from the top-level keys down: it
//	                   must decode strictly (no unknown key, no wrong type)
//	                   but is not validated (it may name services it does
//	                   not define).
//
// Blocks in any other language (```sh, ```text, a bare ```) are ignored.

const (
	examplesDir = "../../examples"
	configDoc   = "../../docs/configuration.md"
	readme      = "../../README.md"
)

func TestExamplesLoad(t *testing.T) {
	var files []string
	err := filepath.WalkDir(examplesDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"minimal.yaml", "pbxgate.yaml"} {
		if !slices.Contains(files, filepath.Join(examplesDir, want)) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			roundTrip(t, c)
		})
	}
}

// roundTrip checks that c prints and parses back to itself.
func roundTrip(t *testing.T, c *Config) {
	t.Helper()
	out, err := Marshal(c)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	c2, err := Parse(out, c.File)
	if err != nil {
		t.Fatalf("effective config does not parse back: %v\n%s", err, out)
	}
	if d := cmp.Diff(c, c2, sameConfig); d != "" {
		t.Fatalf("round trip changed the config (-before +after):\n%s\n%s", d, out)
	}
}

// The full example is the showcase: it must write every key there is.
func TestFullExampleShowsEveryKey(t *testing.T) {
	c, err := Load(filepath.Join(examplesDir, "pbxgate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	written := make(map[string]bool)
	for p := range c.pos.key {
		written[indexRE.ReplaceAllString(p, "[]")] = true
	}
	for _, k := range schemaKeys() {
		if !written[k] {
			t.Errorf("examples/pbxgate.yaml does not show %s", k)
		}
	}
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// schemaKeys lists every key of the file, with [] for list items.
func schemaKeys() []string {
	var keys []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if !sf.IsExported() || name == "-" || name == "" {
				continue
			}
			p := joinPath(path, name)
			keys = append(keys, p)
			ft := sf.Type
			switch {
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[Duration]():
				walk(ft, p)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), p+"[]")
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return keys
}

// docBlock is one fenced code block.
type docBlock struct {
	line     int // of the opening fence
	info     string
	contents string
}

func fencedBlocks(t *testing.T, file string) []docBlock {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []docBlock
	var cur *docBlock
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```"):
			cur = &docBlock{line: n, info: strings.TrimSpace(strings.TrimPrefix(trimmed, "```"))}
			b.Reset()
		case cur != nil && trimmed == "```":
			cur.contents = b.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code block", file, cur.line)
	}
	return blocks
}

func TestDocExamples(t *testing.T) {
	for _, file := range []string{configDoc, readme} {
		if _, err := os.Stat(file); os.IsNotExist(err) && file == readme {
			continue // the README is optional
		}
		full := 0
		for _, bl := range fencedBlocks(t, file) {
			name := fmt.Sprintf("%s:%d", filepath.Base(file), bl.line)
			switch bl.info {
			case "yaml":
				full++
				t.Run(name, func(t *testing.T) {
					c, err := Parse([]byte(bl.contents), name)
					if err != nil {
						t.Fatalf("complete example (```yaml) does not validate; mark parts ```yaml fragment:\n%v", err)
					}
					roundTrip(t, c)
				})
			case "yaml fragment":
				t.Run(name, func(t *testing.T) {
					c, probs := decode([]byte(bl.contents), name)
					if c == nil || len(probs) > 0 {
						t.Fatalf("fragment does not decode:\n%v", joinProblems(probs))
					}
				})
			default:
				if strings.HasPrefix(bl.info, "yaml") || strings.HasPrefix(bl.info, "yml") {
					t.Errorf("%s: unknown block kind %q: use ```yaml or ```yaml fragment", name, bl.info)
				}
			}
		}
		if file == configDoc && full == 0 {
			t.Errorf("%s has no complete ```yaml example", file)
		}
	}
}

// TestDocDefaults compares every literal default in the reference tables
// with the code's, and checks that every key is documented.
func TestDocDefaults(t *testing.T) {
	data, err := os.ReadFile(configDoc)
	if err != nil {
		t.Fatal(err)
	}
	// Every list has one item with only its required keys, so that each
	// default can be looked up.
	c, err := Parse([]byte(`
tls:
  certificates:
    - cert: /etc/pbxgate/certs/site.pem
      key: /etc/pbxgate/certs/site.key
listeners:
  - name: web
    address: ":80"
services:
  - name: app
    protocol: http
    hosts: [app.example.com]
    backend: {address: "10.0.0.1:80"}
    paths:
      allow: [/x]
      deny: [/y]
  - name: pbx
    protocol: sip
    backend: {address: "10.0.0.2:5060"}
sip:
  brands:
    - name: b
      companies:
        - name: c
          service: pbx
          domains: [c.example.com]
          users: [{name: "101"}]
turn:
  users: [{name: u, key: 00112233445566778899aabbccddeeff}]
firewall:
  ports: [{proto: tcp, port: "22"}]
  geoip: {database: /x.mmdb, rules: [{ports: ["22"], deny: [KP]}]}
`), "defaults.yaml")
	if err != nil {
		t.Fatal(err)
	}

	keyRE := regexp.MustCompile("`([^`]+)`")
	documented := make(map[string]bool)
	compared := 0
	inTable := false
	for n, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "| Key | Type | Default |") {
			inTable = true
			continue
		}
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		if !inTable || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 5 {
			t.Errorf("configuration.md:%d: reference row with %d cells", n+1, len(cells))
			continue
		}
		keys := keyRE.FindAllStringSubmatch(cells[1], -1)
		if len(keys) == 0 {
			t.Errorf("configuration.md:%d: row without a `key`", n+1)
		}
		def := strings.TrimSpace(cells[3])
		literal := ""
		if m := keyRE.FindStringSubmatch(def); m != nil && m[0] == def {
			literal = m[1]
		}
		for _, k := range keys {
			key := k[1]
			documented[key] = true
			v, ok := lookup(reflect.ValueOf(c).Elem(), key)
			if !ok {
				t.Errorf("configuration.md:%d: `%s` is no configuration key", n+1, key)
				continue
			}
			if literal == "" {
				continue
			}
			compared++
			if !sameValue(v, literal) {
				t.Errorf("configuration.md:%d: `%s` default is documented as %q, the code's is %q", n+1, key, literal, formatValue(v))
			}
		}
	}
	for _, k := range schemaKeys() {
		if !documented[k] && !isSection(k) {
			t.Errorf("configuration.md does not document `%s`", k)
		}
	}
	if compared < 28 {
		t.Errorf("only %d literal defaults compared; the tables are not being read", compared)
	}
}

// isSection reports whether key is a mapping documented by its own section
// heading rather than a row.
func isSection(key string) bool {
	return strings.HasSuffix(key, ".backend") || strings.HasSuffix(key, ".paths")
}

// lookup follows a documented key ("listeners[].tls") in v; [] takes the
// first item.
func lookup(v reflect.Value, key string) (reflect.Value, bool) {
	for part := range strings.SplitSeq(key, ".") {
		list := strings.HasSuffix(part, "[]")
		part = strings.TrimSuffix(part, "[]")
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		found := false
		t := v.Type()
		for i := range t.NumField() {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if name == part {
				v, found = v.Field(i), true
				break
			}
		}
		if !found {
			return reflect.Value{}, false
		}
		if list {
			if v.Kind() != reflect.Slice || v.Len() == 0 {
				return reflect.Value{}, false
			}
			v = v.Index(0)
		}
	}
	return v, true
}

func sameValue(v reflect.Value, doc string) bool {
	if d, ok := v.Interface().(Duration); ok {
		want, err := ParseDuration(doc)
		return err == nil && want == d
	}
	return formatValue(v) == doc
}

func formatValue(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "nil"
		}
		return formatValue(v.Elem())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = formatValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int64:
		if d, ok := v.Interface().(Duration); ok {
			return d.String()
		}
		return strconv.FormatInt(v.Int(), 10)
	case reflect.String:
		return v.String()
	}
	return fmt.Sprint(v.Interface())
}
