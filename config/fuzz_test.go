package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

// FuzzParse checks that Parse never panics, that a Config it returns passes
// Validate, and that such a Config without secrets survives a round trip
// through yaml.Marshal. Seeds: every testdata/*.yaml fixture and the corpus
// in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, nil, "testdata")
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a Config with its error %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse returned a Config that fails Validate: %v", err)
		}
		if hasSecret(c) {
			return // secrets marshal redacted, so they cannot round-trip
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("yaml.Marshal: %v", err)
		}
		again, err := Parse(out, nil, "")
		if err != nil {
			t.Fatalf("Parse of the marshalled Config: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip changed the Config:\n%s\nbecame\n%s", out, dump(t, again))
		}
	})
}

// hasSecret reports whether any Secret in c is set.
func hasSecret(c *Config) bool {
	for _, f := range fields(reflect.ValueOf(c).Elem(), "") {
		if f.value.Type() == reflect.TypeFor[Secret]() && f.value.String() != "" {
			return true
		}
	}
	return false
}
