package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the file at path, applies environment overrides (see EnvOverrides) and validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &FieldError{Field: "--config", Value: path, Err: fmt.Errorf("%w: cannot read the file: %v", ErrInvalid, err)}
	}
	return parse(data, os.LookupEnv)
}

// Parse decodes YAML strictly over Default() and validates it. It ignores the environment.
func Parse(data []byte) (*Config, error) {
	return parse(data, func(string) (string, bool) { return "", false })
}

func parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	lines, err := decodeStrict(data, &cfg)
	if err != nil {
		return nil, err
	}
	if err := applyEnv(&cfg, lookupEnv); err != nil {
		return nil, err
	}
	if err := validate(&cfg, lines); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// lineMap maps dotted keys to the line they were written on, so validation errors can point at the file.
type lineMap map[string]int

// decodeStrict decodes one YAML document into cfg. Every mapping key must name a field (by its yaml tag) of the
// struct it lands in; otherwise the error names the full dotted key and its line. Maps (extra_env, log options)
// take any key. A value whose type decodes itself (Window) is checked at its key, so its error names the key too.
func decodeStrict(data []byte, cfg *Config) (lineMap, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return lineMap{}, nil // an empty file: all defaults
		}
		return nil, &FieldError{Field: "(file)", Err: fmt.Errorf("%w: %v", ErrSyntax, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &FieldError{Field: "(file)", Line: extra.Line, Err: fmt.Errorf("%w: one YAML document expected", ErrSyntax)}
	}
	lines := lineMap{}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return lines, nil
	}
	if err := checkKeys(root, reflect.TypeOf(*cfg), "", lines); err != nil {
		return nil, err
	}
	if err := root.Decode(cfg); err != nil {
		return nil, typeError(err)
	}
	return lines, nil
}

// checkKeys walks a mapping node alongside the struct type it decodes into, and a sequence alongside a slice of
// structs (node.chains, their nodes), whose elements are keyed "name[i]".
func checkKeys(n *yaml.Node, t reflect.Type, prefix string, lines lineMap) error {
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct {
		return checkElements(n, t.Elem(), strings.TrimSuffix(prefix, "."), lines)
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return nil
		}
		return &FieldError{Field: strings.TrimSuffix(prefix, "."), Line: n.Line, Err: fmt.Errorf("%w: expected a mapping of keys", ErrInvalid)}
	}
	fields := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		fields[strings.Split(f.Tag.Get("yaml"), ",")[0]] = f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := prefix + k.Value
		f, ok := fields[k.Value]
		if !ok {
			return &FieldError{Field: key, Line: k.Line, Err: fmt.Errorf("%w: %s", ErrUnknownKey, knownKeys(prefix, fields))}
		}
		if _, dup := lines[key]; dup {
			return &FieldError{Field: key, Line: k.Line, Err: fmt.Errorf("%w: the key appears twice", ErrInvalid)}
		}
		lines[key] = k.Line
		if u, ok := reflect.New(f.Type).Interface().(yaml.Unmarshaler); ok {
			// A type that decodes itself (Window) is decoded here too, where its key is known, so that its error
			// names the key; decoding the whole file then repeats it without error.
			if err := u.UnmarshalYAML(v); err != nil {
				return &FieldError{Field: key, Line: k.Line, Value: v.Value, Err: err}
			}
			continue
		}
		if err := checkKeys(v, f.Type, key+".", lines); err != nil {
			return err
		}
	}
	return nil
}

// checkElements checks each element of a sequence of mappings (a list of structs) and records its line.
func checkElements(n *yaml.Node, elem reflect.Type, key string, lines lineMap) error {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		return &FieldError{Field: key, Line: n.Line, Err: fmt.Errorf("%w: expected a list", ErrInvalid)}
	}
	for i, e := range n.Content {
		at := fmt.Sprintf("%s[%d]", key, i)
		lines[at] = e.Line
		if err := checkKeys(e, elem, at+".", lines); err != nil {
			return err
		}
	}
	return nil
}

func knownKeys(prefix string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	where := "at the top level"
	if prefix != "" {
		where = "under " + strings.TrimSuffix(prefix, ".")
	}
	return fmt.Sprintf("the keys %s are %s", where, strings.Join(names, ", "))
}

// typeError turns yaml's "line N: cannot unmarshal …" into a FieldError.
func typeError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		line := 0
		fmt.Sscanf(te.Errors[0], "line %d:", &line)
		return &FieldError{Field: "(file)", Line: line, Err: fmt.Errorf("%w: %s", ErrInvalid, te.Errors[0])}
	}
	return &FieldError{Field: "(file)", Err: fmt.Errorf("%w: %v", ErrInvalid, err)}
}
