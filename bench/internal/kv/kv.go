// Package kv reads the benchmark scripts' raw results: flat dotted
// key=value lines such as "http.pbxgate.rps=51234.5" or
// "call.kamailio.rate=9000", a later line for the same key winning, and
// derives numbers from them. The report tools of bench/run.sh
// (bench/benchutil) and bench/sip.sh (bench/siputil) share it.
package kv

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Results maps keys to their raw values.
type Results map[string]string

// Read reads a raw results file; blank lines and # comments are skipped.
func Read(path string) (Results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := Results{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, v, ok := strings.Cut(text, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s:%d: want key=value, got %q", path, line, text)
		}
		r[k] = v
	}
	return r, sc.Err()
}

// Num returns the value of key as a number, and false when it is missing
// or not a number.
func (r Results) Num(key string) (float64, bool) {
	v, err := strconv.ParseFloat(r[key], 64)
	return v, err == nil
}

// Ratio returns a/b when both are present and b is positive.
func (r Results) Ratio(a, b string) (float64, bool) {
	x, ok1 := r.Num(a)
	y, ok2 := r.Num(b)
	if !ok1 || !ok2 || y <= 0 {
		return 0, false
	}
	return x / y, true
}

// Diff returns a-b when both are present.
func (r Results) Diff(a, b string) (float64, bool) {
	x, ok1 := r.Num(a)
	y, ok2 := r.Num(b)
	return x - y, ok1 && ok2
}

// Nested turns the dotted keys into nested maps for a JSON report,
// "call.kamailio.rate=9000" into {"call":{"kamailio":{"rate":9000}}}:
// numbers become float64, except under "meta." where values stay text.
func (r Results) Nested() map[string]any {
	root := map[string]any{}
	for k, val := range r {
		parts := strings.Split(k, ".")
		m := root
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		leaf := parts[len(parts)-1]
		if f, err := strconv.ParseFloat(val, 64); err == nil && !strings.HasPrefix(k, "meta.") {
			m[leaf] = f
		} else {
			m[leaf] = val
		}
	}
	return root
}

// Group writes n with thousands separators: 1234567 → "1,234,567".
func Group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// Verdict is one benchmark target's outcome in a report; Pass nil means it
// could not be judged (a number was missing).
type Verdict struct {
	Target string   `json:"target"`
	Value  *float64 `json:"value"`
	Pass   *bool    `json:"pass"`
	Note   string   `json:"note,omitempty"`
}

// Check is the verdict on target: v measured (ok false: not measured) and
// whether it passes.
func Check(target string, v float64, ok, pass bool) Verdict {
	if !ok {
		return Verdict{Target: target}
	}
	return Verdict{Target: target, Value: &v, Pass: &pass}
}

// String is PASS, FAIL or n/a.
func (v Verdict) String() string {
	switch {
	case v.Pass == nil:
		return "n/a"
	case *v.Pass:
		return "PASS"
	default:
		return "FAIL"
	}
}
