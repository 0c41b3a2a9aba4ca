package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v4"
)

// String formats d like time.Duration.String without trailing zero units:
// "5s", "2m", "1h30m", "1.5s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseDuration reads a duration written like "5s", "2m", "1h30m" (the
// units of time.ParseDuration) or with days, 24 hours each: "7d", "1d12h",
// "1.5d". A number without unit is refused ("5" is ambiguous), and so are
// signs and values beyond about 290 years. This is the one duration syntax
// of pbxgate: the configuration file, the CLI and the admin API use it.
func ParseDuration(s string) (Duration, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, errors.New("empty duration; write it like 5s, 2m or 1h30m")
	}
	if isDigits(in) {
		return 0, fmt.Errorf("duration %q has no unit; write it like %ss", clip(in, 64), clip(in, 64))
	}
	invalid := fmt.Errorf("invalid duration %q; write it like 5s, 2m, 1h30m or 7d", clip(in, 64))
	isNum := func(c byte) bool { return c == '.' || c >= '0' && c <= '9' }
	var total time.Duration
	for rest := in; rest != ""; {
		i := 0
		for i < len(rest) && isNum(rest[i]) {
			i++
		}
		j := i
		for j < len(rest) && !isNum(rest[j]) {
			j++
		}
		num, unit := rest[:i], rest[i:j]
		rest = rest[j:]
		if num == "" || unit == "" {
			return 0, invalid
		}
		var d time.Duration
		if unit == "d" {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, invalid
			}
			h := f * float64(24*time.Hour)
			if h >= math.MaxInt64 {
				return 0, fmt.Errorf("duration %q is too large", clip(in, 64))
			}
			d = time.Duration(h)
		} else {
			var err error
			if d, err = time.ParseDuration(num + unit); err != nil {
				return 0, invalid
			}
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("duration %q is too large", clip(in, 64))
		}
		total += d
	}
	return Duration(total), nil
}

// UnmarshalYAML reads a duration from a YAML string such as "5s" or "1h30m".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("expected a duration like 5s, 2m or 1h30m")
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes the duration as a string like "5s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
