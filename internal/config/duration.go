package config

import (
	"errors"
	"fmt"
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

// ParseDuration reads a duration written like "5s", "2m", "1h30m" (see
// time.ParseDuration) or with a leading number of days: "7d", "1d12h". A
// number without unit is refused: "5" is ambiguous.
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration; write it like 5s, 2m or 1h30m")
	}
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i > 0 && isDigits(s[:i]) && len(s[:i]) <= 5 {
		n, _ := strconv.Atoi(s[:i])
		days = time.Duration(n) * 24 * time.Hour
		if rest = s[i+1:]; rest == "" {
			return Duration(days), nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil {
		if isDigits(s) {
			return 0, fmt.Errorf("duration %q has no unit; write it like %ss", s, s)
		}
		return 0, fmt.Errorf("invalid duration %q; write it like 5s, 2m, 1h30m or 7d", s)
	}
	d += days
	return Duration(d), nil
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
