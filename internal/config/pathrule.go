package config

import (
	"errors"
	"strings"

	"go.yaml.in/yaml/v4"
)

// PathKind says how a PathRule's pattern is matched.
type PathKind uint8

const (
	// PathPrefix matches every path starting with the pattern.
	PathPrefix PathKind = iota + 1
	// PathExact ("= /x") matches only the path itself.
	PathExact
	// PathGlob matches the whole path against a glob: * and ? within one
	// segment, ** across segments ("/**/" also matches a single "/"), [..] a
	// character class.
	PathGlob
)

// String returns "prefix", "exact" or "glob".
func (k PathKind) String() string {
	switch k {
	case PathPrefix:
		return "prefix"
	case PathExact:
		return "exact"
	case PathGlob:
		return "glob"
	}
	return "invalid"
}

// Pattern returns how the rule matches and the pattern proper: for "= /x"
// that is PathExact and "/x". A pattern containing *, ? or [ is a glob, any
// other a prefix.
func (r PathRule) Pattern() (PathKind, string) {
	p := r.Path
	if rest, ok := strings.CutPrefix(p, "="); ok {
		return PathExact, strings.TrimLeft(rest, " \t")
	}
	if strings.ContainsAny(p, "*?[") {
		return PathGlob, p
	}
	return PathPrefix, p
}

// pathRuleFields is PathRule without its YAML methods, for decoding and
// encoding the mapping form.
type pathRuleFields PathRule

// UnmarshalYAML reads a rule from either a plain string (the path) or a
// mapping with path, methods and networks. Line is set to the rule's line.
func (r *PathRule) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*r = PathRule{Path: n.Value, Line: n.Line}
		return nil
	case yaml.MappingNode:
		var f pathRuleFields
		err := n.Load(&f, yaml.WithKnownFields())
		f.Line = n.Line
		*r = PathRule(f)
		return err
	}
	return errors.New("a path rule is a path string or a mapping with path, methods and networks")
}

// MarshalYAML writes the short string form when the rule has no methods and
// no networks, the mapping otherwise.
func (r PathRule) MarshalYAML() (any, error) {
	if len(r.Methods) == 0 && len(r.Networks) == 0 {
		return r.Path, nil
	}
	return pathRuleFields(r), nil
}
