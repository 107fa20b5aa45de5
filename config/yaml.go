package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// yamlSource names where YAML data came from: the path of the file as given
// to Load, or "" for data given to Parse.
type yamlSource string

// at formats a place in the source: "path:line", or "line N" without a file.
func (s yamlSource) at(line int) string {
	if s == "" {
		return "line " + strconv.Itoa(line)
	}
	return string(s) + ":" + strconv.Itoa(line)
}

// decodeYAML decodes the single YAML document in data over c, rejecting
// unknown keys and further documents. Its errors start with the place in
// src.
func decodeYAML(data []byte, src yamlSource, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return src.yamlError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return src.yamlError(err)
	default:
		return fmt.Errorf("config: %s: a second YAML document; the file must hold exactly one", src.at(extra.Line))
	}
}

var (
	// yamlLine splits the "line N: " from an entry of a yaml.TypeError.
	yamlLine = regexp.MustCompile(`^line ([0-9]+): (.*)$`)
	// yamlSyntax splits the line from a syntax error of the YAML library.
	yamlSyntax = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
)

// yamlError turns the YAML library's error into ours, starting with the
// place in src: a type error's lines become one error each, like the
// validation errors.
func (s yamlSource) yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if m := yamlSyntax.FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return fmt.Errorf("config: %s: invalid YAML: %s", s.at(line), m[2])
		}
		if s == "" {
			return fmt.Errorf("config: %w", err)
		}
		return fmt.Errorf("config: %s: %w", s, err)
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ := strconv.Atoi(m[1])
			msg = s.at(line) + ": " + m[2]
		}
		errs[i] = errors.New("config: " + msg)
	}
	return errors.Join(errs...)
}
