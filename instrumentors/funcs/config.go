package funcs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigSize bounds a --config file: it lists functions, not data.
const maxConfigSize = 1 << 20

// LoadConfig reads a --config file (YAML, or JSON when it starts with "{").
func LoadConfig(path string) ([]Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	specs, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %v", path, err)
	}
	return specs, nil
}

// ParseConfig parses the functions of a --config file:
//
//	functions:
//	  - main.Divide(dividend int, divisor int) (quotient int, remainder int)
//	  - func: main.describe(r *net/http.Request, tag string) int
//	    fields: [r.URL.Path, r.Method]
//
// or the same structure in JSON. Each entry is a --func string, or a
// mapping whose func is one and whose fields add field paths.
func ParseConfig(data []byte) ([]Spec, error) {
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigSize)
	}
	var doc any
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("JSON: %v", err)
		}
		if dec.More() {
			return nil, errors.New("JSON: more than one value")
		}
	} else if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("YAML: %v", err)
	}
	top, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New(`want a mapping with a "functions" list`)
	}
	if err := onlyKeys(top, "functions"); err != nil {
		return nil, err
	}
	list, ok := top["functions"].([]any)
	if !ok || len(list) == 0 {
		return nil, errors.New(`"functions" must be a non-empty list`)
	}
	var specs []Spec
	for i, item := range list {
		spec, err := configEntry(item)
		if err != nil {
			return nil, fmt.Errorf("functions[%d]: %v", i, err)
		}
		specs = append(specs, spec)
	}
	return specs, nil
}

func configEntry(item any) (Spec, error) {
	switch v := item.(type) {
	case string:
		return ParseFunc(v)
	case map[string]any:
		if err := onlyKeys(v, "func", "fields"); err != nil {
			return Spec{}, err
		}
		fn, ok := v["func"].(string)
		if !ok {
			return Spec{}, errors.New(`"func" must be a string: the function, as for --func`)
		}
		spec, err := ParseFunc(fn)
		if err != nil {
			return Spec{}, err
		}
		if raw, ok := v["fields"]; ok {
			fields, ok := raw.([]any)
			if !ok {
				return Spec{}, errors.New(`"fields" must be a list of paths such as r.URL.Path`)
			}
			for _, f := range fields {
				path, ok := f.(string)
				if !ok {
					return Spec{}, fmt.Errorf("field %v is not a string", f)
				}
				if err := checkPath(path); err != nil {
					return Spec{}, err
				}
				spec.Fields = append(spec.Fields, path)
			}
		}
		return spec, nil
	}
	return Spec{}, fmt.Errorf("want a string or a mapping with func (and fields), found %T", item)
}

func onlyKeys(m map[string]any, allowed ...string) error {
	var unknown []string
	for k := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown key %s (known: %s)", strings.Join(unknown, ", "), strings.Join(allowed, ", "))
	}
	return nil
}
