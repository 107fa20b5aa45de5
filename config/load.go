package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// maxSecretFileSize bounds how much of a secret file is read, so a path such
// as /dev/zero fails instead of exhausting memory.
const maxSecretFileSize = 64 << 10

// Load reads the YAML file at path and returns the resulting configuration,
// as Parse does. An empty path means no file: the defaults, then env.
// Relative *_file paths, from the file or from env, resolve against the
// file's directory, or the working directory when path is empty.
func Load(path string, env []string) (*Config, error) {
	if path == "" {
		return Parse(nil, env, "")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return parse(data, yamlSource(path), env, filepath.Dir(path))
}

// Parse builds a configuration from YAML data and environment variables.
// It starts from Default, decodes data over it (an empty document changes
// nothing; unknown keys and a second document are errors), applies the
// PUSHSYNC_* variables in env (a slice like os.Environ()), makes relative
// *_file paths relative to baseDir, reads secrets from their files, and
// validates. It reports every problem it finds, joined; on error the Config is
// nil. Errors in data give its line ("line 2"); Load's give the file and line
// ("pushsyncd.yaml:2").
func Parse(data []byte, env []string, baseDir string) (*Config, error) {
	return parse(data, "", env, baseDir)
}

// parse is Parse of data read from the file src, which its YAML errors name.
func parse(data []byte, src yamlSource, env []string, baseDir string) (*Config, error) {
	c := Default()
	if err := decodeYAML(data, src, c); err != nil {
		return nil, err
	}
	errs := applyEnv(c, env)
	errs = append(errs, resolveFiles(c, baseDir)...)
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// A field is one leaf setting of a Config: its dotted yaml key and its
// settable value.
type field struct {
	key   string
	value reflect.Value
}

// fields lists the leaf settings of the struct v, in declaration order, by
// their yaml tags; nested structs contribute their fields under "name.".
func fields(v reflect.Value, prefix string) []field {
	var out []field
	t := v.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			out = append(out, fields(fv, prefix+name+".")...)
			continue
		}
		out = append(out, field{key: prefix + name, value: fv})
	}
	return out
}

// resolveFiles makes every relative *_file path relative to baseDir and reads
// each set *_file into its sibling Secret (key "x" beside "x_file").
func resolveFiles(c *Config, baseDir string) []error {
	all := fields(reflect.ValueOf(c).Elem(), "")
	files := make(map[string]reflect.Value)
	for _, f := range all {
		if !strings.HasSuffix(f.key, "_file") || f.value.Kind() != reflect.String {
			continue
		}
		files[f.key] = f.value
		if p := f.value.String(); p != "" && baseDir != "" && !filepath.IsAbs(p) {
			f.value.SetString(filepath.Join(baseDir, p))
		}
	}
	var errs []error
	for _, f := range all {
		fileKey := f.key + "_file"
		file, ok := files[fileKey]
		if f.value.Type() != reflect.TypeFor[Secret]() || !ok || file.String() == "" {
			continue
		}
		if f.value.String() != "" {
			errs = append(errs, fmt.Errorf("config: %s and %s are both set; set only one", f.key, fileKey))
			continue
		}
		secret, err := readSecretFile(file.String())
		if err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", fileKey, err))
			continue
		}
		f.value.SetString(secret)
	}
	return errs
}

// readSecretFile returns the contents of the file at path less one trailing
// newline. An empty or oversized file is an error.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", err
	}
	if len(data) > maxSecretFileSize {
		return "", fmt.Errorf("%s: larger than %d KiB", path, maxSecretFileSize>>10)
	}
	s := string(data)
	if t, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(t, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%s: file is empty", path)
	}
	return s, nil
}
