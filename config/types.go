package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a length of time written as a Go duration string, such as
// "30s", "1h30m" or "500ms". A bare number such as 30 is rejected because its
// unit would be a guess; only "0" may be written without a unit.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration, for example "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText formats d like String, so JSON and text encoders write "30s"
// rather than a count of nanoseconds.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses a Go duration string such as "30s" into d.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string such as "30s".
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML parses a YAML scalar holding a Go duration string into d.
// Its errors carry the line number, as the YAML library's own errors do.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: invalid duration: want a string such as 30s", n.Line)}}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// parseDuration parses s with time.ParseDuration and explains the common
// mistake of leaving out the unit.
func parseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		if _, ferr := strconv.ParseFloat(s, 64); ferr == nil {
			return 0, fmt.Errorf("invalid duration %q: use a unit, e.g. 30s", s)
		}
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return Duration(d), nil
}

// redacted is what every formatting of a non-empty Secret prints.
const redacted = "<redacted>"

// Secret is a password or token. Every way of printing it — fmt verbs,
// JSON, YAML, text and slog — shows "<redacted>" when it is set and an empty
// string when it is not, so a logged or dumped Config never reveals it.
// Convert it with string(s) only where the value is handed to a client.
type Secret string

// String returns "<redacted>" if s is set and "" otherwise.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns a Go expression for s with its value redacted, for %#v.
func (s Secret) GoString() string { return "config.Secret(" + strconv.Quote(s.String()) + ")" }

// Format implements fmt.Formatter so that every verb, including %q, %x and
// %#v, formats the redacted form instead of the value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, s.GoString())
		return
	}
	_, _ = fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// MarshalText returns the redacted form of s.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON returns the redacted form of s as a JSON string; zerolog's
// Interface and encoding/json use it.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalYAML returns the redacted form of s.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue returns the redacted form of s for log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }
