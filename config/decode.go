package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// decodeYAML fills cfg from data. It walks the yaml.Node tree next to the Go
// struct instead of calling yaml.Unmarshal on the whole document so that
// every failure knows the dotted key it belongs to and unknown keys can be
// reported as warnings rather than silently dropped.
func decodeYAML(file string, data []byte, cfg *Config) (*decoder, error) {
	d := &decoder{file: file, present: make(map[string]int)}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return d, &Error{File: file, Message: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if len(doc.Content) == 0 {
		// An empty file is a mapping with no keys; validation then says
		// which required key is missing first.
		return d, nil
	}
	return d, d.decode(doc.Content[0], reflect.ValueOf(cfg).Elem(), "")
}

type decoder struct {
	file     string
	warnings []Warning
	present  map[string]int // key path -> line of every known key seen
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

func (d *decoder) decode(node *yaml.Node, out reflect.Value, key string) error {
	node = resolveAlias(node)
	if isNull(node) {
		// "key:" with nothing after it means "not set": keep the default.
		return nil
	}
	if reflect.PointerTo(out.Type()).Implements(unmarshalerType) {
		return d.decodeLeaf(node, out, key)
	}
	switch out.Kind() {
	case reflect.Struct:
		return d.decodeStruct(node, out, key)
	case reflect.Map:
		return d.decodeMap(node, out, key)
	default:
		return d.decodeLeaf(node, out, key)
	}
}

func (d *decoder) decodeStruct(node *yaml.Node, out reflect.Value, key string) error {
	if node.Kind != yaml.MappingNode {
		return d.typeError(node, out.Type(), key)
	}
	fields := yamlFields(out.Type())
	return d.eachPair(node, key, func(name string, keyNode, value *yaml.Node) error {
		idx, ok := fields[name]
		if !ok {
			d.warnings = append(d.warnings, Warning{
				File: d.file, Key: joinKey(key, name), Line: keyNode.Line,
				Message: "unknown key, ignored",
			})
			return nil
		}
		d.present[joinKey(key, name)] = keyNode.Line
		return d.decode(value, out.Field(idx), joinKey(key, name))
	})
}

func (d *decoder) decodeMap(node *yaml.Node, out reflect.Value, key string) error {
	if node.Kind != yaml.MappingNode {
		return d.typeError(node, out.Type(), key)
	}
	if out.Type().Key().Kind() != reflect.String {
		return fmt.Errorf("config: %s: map keys of type %s are not supported", key, out.Type().Key())
	}
	if out.IsNil() {
		out.Set(reflect.MakeMap(out.Type()))
	}
	return d.eachPair(node, key, func(name string, _, value *yaml.Node) error {
		elem := reflect.New(out.Type().Elem()).Elem()
		if err := d.decode(value, elem, joinMapKey(key, name)); err != nil {
			return err
		}
		out.SetMapIndex(reflect.ValueOf(name).Convert(out.Type().Key()), elem)
		return nil
	})
}

// eachPair calls fn for every key of a mapping, after the keys pulled in
// through YAML merge keys ("<<: *anchor") so that explicit keys win.
func (d *decoder) eachPair(node *yaml.Node, key string, fn func(name string, keyNode, value *yaml.Node) error) error {
	seen := make(map[string]int)
	var merges []*yaml.Node
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return &Error{File: d.file, Key: key, Line: k.Line, Message: "mapping keys must be plain strings"}
		}
		if first, dup := seen[k.Value]; dup {
			return &Error{File: d.file, Key: joinKey(key, k.Value), Line: k.Line,
				Message: fmt.Sprintf("duplicate key, first defined on line %d", first)}
		}
		seen[k.Value] = k.Line
	}
	for _, m := range merges {
		if err := d.eachMerged(m, key, fn); err != nil {
			return err
		}
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		if k.Tag == "!!merge" {
			continue
		}
		if err := fn(k.Value, k, v); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) eachMerged(m *yaml.Node, key string, fn func(string, *yaml.Node, *yaml.Node) error) error {
	m = resolveAlias(m)
	switch m.Kind {
	case yaml.MappingNode:
		return d.eachPair(m, key, fn)
	case yaml.SequenceNode:
		for _, item := range m.Content {
			if err := d.eachMerged(item, key, fn); err != nil {
				return err
			}
		}
		return nil
	default:
		return &Error{File: d.file, Key: key, Line: m.Line, Message: "merge key (<<) must refer to a mapping"}
	}
}

func (d *decoder) decodeLeaf(node *yaml.Node, out reflect.Value, key string) error {
	err := node.Decode(out.Addr().Interface())
	if err == nil {
		return nil
	}
	if _, isTypeErr := errors.AsType[*yaml.TypeError](err); isTypeErr {
		return d.typeError(node, out.Type(), key)
	}
	// Custom unmarshalers (Duration, Level) already phrase their errors
	// for humans; only the location is added here.
	return &Error{File: d.file, Key: key, Line: node.Line, Message: err.Error()}
}

func (d *decoder) typeError(node *yaml.Node, want reflect.Type, key string) error {
	return &Error{
		File: d.file, Key: key, Line: node.Line,
		Message: fmt.Sprintf("wrong type: want %s, got %s", describeType(want), describeNode(node)),
	}
}

func describeType(t reflect.Type) string {
	if t == reflect.TypeFor[Duration]() {
		return `a duration such as "30s" or "1h"`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Struct, reflect.Map:
		return "a mapping"
	case reflect.Slice, reflect.Array:
		return "a list"
	default:
		return t.String()
	}
}

func describeNode(node *yaml.Node) string {
	switch node.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", node.Value)
	}
}

// yamlFields maps yaml key names to struct field indexes.
func yamlFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = strings.ToLower(f.Name)
		}
		fields[name] = i
	}
	return fields
}

func resolveAlias(node *yaml.Node) *yaml.Node {
	for node.Kind == yaml.AliasNode && node.Alias != nil {
		node = node.Alias
	}
	return node
}

func isNull(node *yaml.Node) bool {
	return node.Kind == yaml.ScalarNode && node.Tag == "!!null"
}
