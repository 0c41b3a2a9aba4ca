package config

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v4"
)

// Service returns the service called name.
func (c *Config) Service(name string) (*Service, bool) {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return &c.Services[i], true
		}
	}
	return nil, false
}

// Listener returns the listener called name.
func (c *Config) Listener(name string) (*Listener, bool) {
	for i := range c.Listeners {
		if c.Listeners[i].Name == name {
			return &c.Listeners[i], true
		}
	}
	return nil, false
}

// Certificate returns the certificate called name.
func (c *Config) Certificate(name string) (*Certificate, bool) {
	for i := range c.TLS.Certificates {
		if c.TLS.Certificates[i].Name == name {
			return &c.TLS.Certificates[i], true
		}
	}
	return nil, false
}

// Carries reports whether the listener accepts protocol proto.
func (l *Listener) Carries(proto string) bool { return slices.Contains(l.Protocols, proto) }

// Marshal prints c as YAML, the effective configuration when defaults are
// applied: every key with its value, except empty lists and strings (which
// mean "none" or "the default" there). Parse reads the output back to the
// same Config.
func Marshal(c *Config) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(c); err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	prune(&n)
	out, err := yaml.Dump(&n)
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return out, nil
}

// prune drops mapping entries whose value is an empty list, an empty string
// or a mapping left empty, in place. An http service's reject_statuses: []
// is kept: there, empty means "none" and absent means the default.
func prune(n *yaml.Node) {
	for _, c := range n.Content {
		prune(c)
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	http := false
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "protocol" && n.Content[i+1].Value == ProtoHTTP {
			http = true
		}
	}
	kept := n.Content[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		empty := (v.Kind == yaml.SequenceNode || v.Kind == yaml.MappingNode) && len(v.Content) == 0 ||
			v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == ""
		if empty && !(http && k.Value == "reject_statuses") {
			continue
		}
		kept = append(kept, k, v)
	}
	n.Content = kept
}

// Where returns "file:line: path" for a configuration path such as
// "services[2].backend.ca", so errors found after validation (an unreadable
// certificate, a CA file) point at the line that caused them. The line is
// the nearest one written for path; file and line are left out when unknown.
func (c *Config) Where(path string) string {
	loc := c.File
	if l := c.pos.line(path); l > 0 {
		if loc != "" {
			loc += ":"
		}
		loc += fmt.Sprint(l)
	}
	if loc == "" {
		return path
	}
	return loc + ": " + path
}
