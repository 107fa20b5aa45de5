package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

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
// unknown keys and further documents. It first checks the document's keys
// against the settings of c, so that its errors name the dotted key
// (dispatcher.ack_wait) besides the place in src.
func decodeYAML(data []byte, src yamlSource, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return src.yamlError(err, data, nil)
	}
	k := newKeyChecker(c)
	k.document(&doc)
	var errs []error
	for _, p := range k.problems {
		errs = append(errs, src.problem(p))
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		errs = append(errs, src.yamlError(err, data, nil))
	default:
		errs = append(errs, fmt.Errorf("config: %s: a second YAML document; the file must hold exactly one", src.at(extra.Line)))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The check passed: decode as the library does, still strictly in case
	// the check missed something.
	dec = yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		return src.yamlError(err, data, k.lines)
	}
	return nil
}

// A yamlProblem is something wrong in the YAML document: at a line, with a
// dotted key ("" for the document as a whole).
type yamlProblem struct {
	line int
	key  string
	msg  string
}

// problem formats p as an error: "config: path:line: key: msg".
func (s yamlSource) problem(p yamlProblem) error {
	if p.key == "" {
		return fmt.Errorf("config: %s: %s", s.at(p.line), p.msg)
	}
	return fmt.Errorf("config: %s: %s: %s", s.at(p.line), p.key, p.msg)
}

// A keyChecker walks a YAML document against the settings of a Config, as
// fields lists them, and records the problems it finds.
type keyChecker struct {
	leaves   map[string]reflect.Type // dotted key of each setting → its type
	sections map[string][]string     // dotted key of each section ("" for the top) → its keys in order
	problems []yamlProblem
	lines    map[int]string // line → the dotted key written on it, "" if several
}

func newKeyChecker(c *Config) *keyChecker {
	k := &keyChecker{
		leaves:   make(map[string]reflect.Type),
		sections: make(map[string][]string),
		lines:    make(map[int]string),
	}
	for _, f := range fields(reflect.ValueOf(c).Elem(), "") {
		k.leaves[f.key] = f.value.Type()
		section := ""
		for rest := f.key; ; {
			name, tail, more := strings.Cut(rest, ".")
			if !slices.Contains(k.sections[section], name) {
				k.sections[section] = append(k.sections[section], name)
			}
			if !more {
				break
			}
			section, rest = joinKey(section, name), tail
		}
	}
	return k
}

// joinKey returns the dotted key of name in section.
func joinKey(section, name string) string {
	if section == "" {
		return name
	}
	return section + "." + name
}

func (k *keyChecker) add(line int, key, msg string) {
	k.problems = append(k.problems, yamlProblem{line: line, key: key, msg: msg})
}

// saw notes that key is written on line, for naming the key of an error the
// YAML library reports by line.
func (k *keyChecker) saw(line int, key string) {
	if old, ok := k.lines[line]; ok && old != key {
		key = ""
	}
	k.lines[line] = key
}

// document checks the root of doc, a document node.
func (k *keyChecker) document(doc *yaml.Node) {
	if len(doc.Content) != 1 {
		return
	}
	switch root := doc.Content[0]; {
	case root.Kind == yaml.MappingNode:
		k.section(root, "")
	case !isNull(root):
		k.add(root.Line, "", "the settings must be a mapping of keys to values, such as role: worker, got "+describe(root, false))
	}
}

// section checks the mapping n, the value of section.
func (k *keyChecker) section(n *yaml.Node, section string) {
	k.mapping(n, section, make(map[string]int), map[*yaml.Node]bool{n: true}, true)
}

// mapping checks the keys of n, a mapping written for section or merged into
// it. seen holds the keys already given and their lines; a key given again
// in the same mapping is an error, one given again by a merge is not (the
// first wins, as in the YAML library). merged holds the mappings already
// merged, so that each is checked once however often it is merged.
func (k *keyChecker) mapping(n *yaml.Node, section string, seen map[string]int, merged map[*yaml.Node]bool, written bool) {
	var merge *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		name := kn.Value
		key := joinKey(section, name)
		if kn.Kind != yaml.ScalarNode || name == "" {
			k.add(kn.Line, section, "a key must be a name, such as "+k.sections[section][0])
			continue
		}
		if isMergeKey(kn) {
			if merge == nil {
				merge = kn
			} else if written {
				k.add(kn.Line, key, fmt.Sprintf("given twice; the first is at line %d (merge a list of mappings instead)", merge.Line))
			}
			continue
		}
		if first, ok := seen[name]; ok {
			if written {
				k.add(kn.Line, key, fmt.Sprintf("given twice; the first is at line %d", first))
			}
			continue
		}
		seen[name] = kn.Line
		k.saw(kn.Line, key)
		if vn.Kind == yaml.ScalarNode {
			k.saw(vn.Line, key)
		}
		k.value(kn, vn, key)
	}
	if merge != nil {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if isMergeKey(n.Content[i]) {
				k.merge(n.Content[i+1], section, seen, merged)
			}
		}
	}
}

// isMergeKey reports whether n is the merge key <<, as the YAML library
// recognises it.
func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && (n.Tag == "" || n.Tag == "!" || n.ShortTag() == "!!merge")
}

// merge checks the value m of a merge key in section: a mapping, or a list
// of mappings, whose keys are merged into the section's.
func (k *keyChecker) merge(m *yaml.Node, section string, seen map[string]int, merged map[*yaml.Node]bool) {
	list := []*yaml.Node{m}
	if m.Kind == yaml.SequenceNode {
		list = m.Content
	}
	for _, n := range list {
		n = resolve(n)
		if n.Kind != yaml.MappingNode {
			k.add(n.Line, joinKey(section, "<<"), "a merge must give a mapping or a list of mappings")
			continue
		}
		if merged[n] {
			continue
		}
		merged[n] = true
		k.mapping(n, section, seen, merged, false)
	}
}

// resolve returns the node an alias stands for, or n if n is no alias.
func resolve(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

// value checks vn, the value of key kn (dotted key).
func (k *keyChecker) value(kn, vn *yaml.Node, key string) {
	vn = resolve(vn)
	if t, ok := k.leaves[key]; ok && !strings.Contains(kn.Value, ".") {
		k.leaf(kn, vn, key, t)
		return
	}
	if _, ok := k.sections[key]; ok && !strings.Contains(kn.Value, ".") {
		switch {
		case vn.Kind == yaml.MappingNode:
			k.section(vn, key)
		case !isNull(vn): // an empty section keeps its defaults
			k.add(kn.Line, key, "must be a mapping of settings, got "+describe(vn, false))
		}
		return
	}
	k.add(kn.Line, key, k.unknown(key, kn.Value))
}

// isNull reports whether n is null: empty, ~ or null. A setting given null
// keeps its default, as the YAML library leaves it.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is for an error: a mapping, a list, or the quoted
// value of a scalar, except a secret's, which names only its YAML tag.
func describe(n *yaml.Node, secret bool) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case secret:
		return "a value tagged " + n.ShortTag()
	}
	return strconv.Quote(n.Value)
}

// leaf checks vn, the value of the setting key (written at kn) of type t,
// decoding it as the YAML library would.
func (k *keyChecker) leaf(kn, vn *yaml.Node, key string, t reflect.Type) {
	if isNull(vn) {
		return
	}
	switch {
	case t == reflect.TypeFor[Duration]():
		if vn.Kind != yaml.ScalarNode {
			k.add(kn.Line, key, "must be a duration such as 30s, got "+describe(vn, false))
		} else if _, err := parseDuration(vn.Value); err != nil {
			k.add(kn.Line, key, err.Error())
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		k.list(kn, vn, key)
	case vn.Kind != yaml.ScalarNode || vn.Decode(reflect.New(t).Interface()) != nil,
		// The YAML library stores a number such as 1.5 in an integer
		// without its fraction: 1, or -1 (unlimited) for -1.9.
		t.Kind() == reflect.Int && vn.ShortTag() == "!!float":
		k.add(kn.Line, key, "must be "+kindName(t)+", got "+describe(vn, t == reflect.TypeFor[Secret]()))
	}
}

// kindName says what a setting of type t must be.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// listItems says what the items of a list setting are, where "strings"
// would say too little.
var listItems = map[string]string{
	"redis.addrs":              "host:port",
	"api.regions":              "region names",
	"api.cors_allowed_origins": "origins",
	"api.trusted_proxies":      "CIDRs",
}

// list checks vn, the value of the list setting key (written at kn): a list
// of strings. A single string is an error that shows it written as a list.
func (k *keyChecker) list(kn, vn *yaml.Node, key string) {
	items := listItems[key]
	if items == "" {
		items = "strings"
	}
	switch vn.Kind {
	case yaml.ScalarNode:
		k.add(kn.Line, key, fmt.Sprintf("must be a list of %s, got a string (%q); write %s", items, vn.Value, flowList(vn.Value)))
	case yaml.SequenceNode:
		for i, item := range vn.Content {
			if v := resolve(item); !isNull(v) && (v.Kind != yaml.ScalarNode || v.Decode(new(string)) != nil) {
				k.add(item.Line, fmt.Sprintf("%s[%d]", key, i), "must be a string, got "+describe(v, false))
			}
		}
	default:
		k.add(kn.Line, key, fmt.Sprintf("must be a list of %s, got %s", items, describe(vn, false)))
	}
}

// flowList writes the comma-separated items in s as a YAML flow list, such
// as [a:6379, b:6379], quoting the items if they do not read back as written.
func flowList(s string) string {
	var items []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			items = append(items, item)
		}
	}
	list := "[" + strings.Join(items, ", ") + "]"
	var back []string
	if err := yaml.Unmarshal([]byte(list), &back); err == nil && slices.Equal(back, items) {
		return list
	}
	quoted := make([]string, len(items))
	for i, item := range items {
		quoted[i] = strconv.Quote(item)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// unknown explains that key, written name in its mapping, is no setting: it
// suggests the nearest key when one is near enough to be a typo, or else
// lists the keys the section has.
func (k *keyChecker) unknown(key, name string) string {
	section := strings.TrimSuffix(key, "."+name)
	if section == key {
		section = ""
	}
	if strings.Contains(name, ".") && k.known(key) {
		first, rest, _ := strings.Cut(name, ".")
		return fmt.Sprintf("unknown key; YAML does not read a dotted key as nested keys: write %s: with %s: indented under it", first, rest)
	}
	if near := k.nearest(key, name); len(near) > 0 {
		return "unknown key; did you mean " + strings.Join(near, " or ") + "?"
	}
	if section == "" {
		return "unknown key; the settings are " + strings.Join(k.sections[""], ", ")
	}
	return "unknown key; " + section + " has " + strings.Join(k.sections[section], ", ")
}

// known reports whether key is a setting or a section.
func (k *keyChecker) known(key string) bool {
	_, leaf := k.leaves[key]
	_, section := k.sections[key]
	return leaf || section
}

// nearest returns the known key nearest to key, written name, if it is
// within 3 edits and half the length of name (the first in sorted order of
// those as near); failing that, the keys named name elsewhere, for a key
// written in the wrong section.
func (k *keyChecker) nearest(key, name string) []string {
	var all []string
	for s := range k.sections {
		if s != "" {
			all = append(all, s)
		}
	}
	for l := range k.leaves {
		all = append(all, l)
	}
	slices.Sort(all)
	best, bestDist := "", min(3, len(name)/2)+1
	for _, cand := range all {
		if max(len(key)-len(cand), len(cand)-len(key)) >= bestDist {
			continue // it takes at least as many edits as the lengths differ
		}
		if d := editDistance(key, cand); d < bestDist {
			best, bestDist = cand, d
		}
	}
	if best != "" {
		return []string{best}
	}
	var same []string
	for _, cand := range all {
		if cand == name || strings.HasSuffix(cand, "."+name) {
			same = append(same, cand)
		}
	}
	return same
}

var (
	// yamlLine splits the "line N: " from an entry of a yaml.TypeError.
	yamlLine = regexp.MustCompile(`^line ([0-9]+): (.*)$`)
	// yamlSyntax splits the line from a syntax error of the YAML library.
	yamlSyntax = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)
)

// yamlError turns the YAML library's error about data into ours, starting
// with the place in s and, where lines says which key is written on the line,
// the key: a type error's lines become one error each, like the validation
// errors.
func (s yamlSource) yamlError(err error, data []byte, lines map[int]string) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		if line, msg := syntaxLine(err.Error()); line > 0 {
			if tab := tabIndented(data, line, msg); tab > 0 {
				return fmt.Errorf("config: %s: invalid YAML: indented with a tab; YAML indents with spaces only", s.at(tab))
			}
			return fmt.Errorf("config: %s: invalid YAML: %s", s.at(line), msg)
		}
		if s == "" {
			return fmt.Errorf("config: %w", err)
		}
		return fmt.Errorf("config: %s: %w", s, err)
	}
	errs := make([]error, len(te.Errors))
	for i, msg := range te.Errors {
		m := yamlLine.FindStringSubmatch(msg)
		if m == nil {
			errs[i] = errors.New("config: " + msg)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		errs[i] = s.problem(yamlProblem{line: line, key: lines[line], msg: m[2]})
	}
	return errors.Join(errs...)
}

// yamlParserErrors are the syntax errors of the YAML library's parser, as
// against its scanner's: the library gives their line counted from 0 (the
// scanner's from 1), and none for the first line.
var yamlParserErrors = map[string]bool{
	"did not find expected key": true, "did not find expected node content": true,
	"did not find expected '-' indicator": true, "did not find expected ',' or ']'": true,
	"did not find expected ',' or '}'": true, "did not find expected <document start>": true,
	"did not find expected <stream-start>": true, "found duplicate %YAML directive": true,
	"found duplicate %TAG directive": true, "found incompatible YAML document": true,
	"found undefined tag handle": true,
}

// syntaxLine returns the line, counted from 1, and the message of the YAML
// library's syntax error msg, or 0 if msg is not one. The library leaves
// the line out of one on the first line, and counts a parser error's from
// 0. Its decoder's errors (an unknown anchor…) are no syntax errors.
func syntaxLine(msg string) (int, string) {
	if m := yamlSyntax.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserErrors[m[2]] {
			line++
		}
		return line, m[2]
	}
	msg, ok := strings.CutPrefix(msg, "yaml: ")
	if ok && (yamlParserErrors[msg] || yamlScannerError.MatchString(msg)) {
		return 1, msg
	}
	return 0, ""
}

// yamlScannerError matches the problems the YAML library's scanner reports.
var yamlScannerError = regexp.MustCompile(`^(found (character|unexpected|unknown|invalid|extremely|an indentation|a tab)|did not find (expected|the expected)|could not find expected|mapping (values|keys) are not allowed|block sequence entries are not allowed|exceeded max depth)`)

// tabIndented returns the line of data whose indentation holds the tab that
// caused the YAML library's syntax error msg, at line from (see
// syntaxLine), or 0 if a tab did not cause it. The library does not say so
// when a tab starts the line ("found character that cannot start any
// token", at the tab's line); when it does say tab, it gives the line where
// the value before the tab starts, which may be earlier.
func tabIndented(data []byte, from int, msg string) int {
	onlyFrom := msg == "found character that cannot start any token"
	if !onlyFrom && !strings.Contains(msg, "tab character") {
		return 0
	}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if n < from {
			continue
		}
		// A list item's dash is part of its indentation.
		if indent := line[:len(line)-len(strings.TrimLeft(line, " \t-"))]; strings.Contains(indent, "\t") {
			return n
		}
		if onlyFrom {
			break
		}
	}
	return 0
}
