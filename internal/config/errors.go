package config

import (
	"errors"
	"strconv"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error that is the fault of the
// configuration's content: YAML syntax, unknown keys, wrong types and failed
// validation. Errors reading the file do not match it.
var ErrInvalid = errors.New("invalid configuration")

// Problem is one thing wrong with (or, from Warnings, worth a look in) a
// configuration, located by file, line and field path.
type Problem struct {
	// File is the configuration file, "" when parsed from bytes.
	File string
	// Line is the 1-based line in File, 0 when unknown (the field is absent
	// and has no enclosing key, or the Config was built in code).
	Line int
	// Path is the field, in YAML keys: "listeners[1].address". Empty for
	// problems with the document as a whole (YAML syntax).
	Path string
	// Message says what is wrong and, where it helps, how to fix it.
	Message string
}

// Error formats the problem as "file:line: path: message", leaving out the
// parts that are unknown ("line 3: path: message" without a file name).
func (p *Problem) Error() string {
	var b strings.Builder
	switch {
	case p.File != "" && p.Line > 0:
		b.WriteString(p.File)
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	case p.File != "":
		b.WriteString(p.File)
		b.WriteString(": ")
	case p.Line > 0:
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(p.Line))
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Unwrap makes every Problem match ErrInvalid.
func (p *Problem) Unwrap() error { return ErrInvalid }

// Problems returns the problems carried by an error from Load, Parse or
// Validate, in order; nil when err holds none.
func Problems(err error) []*Problem {
	if err == nil {
		return nil
	}
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case *Problem:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, c := range x.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			if c := x.Unwrap(); c != nil {
				walk(c)
			}
		}
	}
	walk(err)
	return out
}
