package main

import (
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// editYAML sets keys in a YAML file through its node tree, so the
// comments of the example config survive for the reader of .demo/.
func editYAML(path string, values map[string]any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return fmt.Errorf("%s is not a YAML document", path)
	}
	for key, v := range values {
		if err := setPath(doc.Content[0], splitKey(key), v); err != nil {
			return fmt.Errorf("%s: %s: %w", path, key, err)
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return err
	}
	// The config holds tokens.
	return os.WriteFile(path, out, 0o600)
}

func splitKey(key string) []string {
	var parts []string
	start := 0
	for i := range len(key) {
		if key[i] == '.' {
			parts = append(parts, key[start:i])
			start = i + 1
		}
	}
	return append(parts, key[start:])
}

// setPath sets the value at path in a mapping node, creating mappings on
// the way.
func setPath(node *yaml.Node, path []string, v any) error {
	if node.Kind != yaml.MappingNode {
		return fmt.Errorf("%q is not a mapping", path[0])
	}
	for i := 0; i+1 < len(node.Content); i += 2 {
		if node.Content[i].Value != path[0] {
			continue
		}
		if len(path) > 1 {
			return setPath(node.Content[i+1], path[1:], v)
		}
		var val yaml.Node
		if err := val.Encode(v); err != nil {
			return err
		}
		// Keep the comments that sit on the old value.
		val.LineComment, val.HeadComment = node.Content[i+1].LineComment, node.Content[i+1].HeadComment
		*node.Content[i+1] = val
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(path) == 1 {
		if err := child.Encode(v); err != nil {
			return err
		}
	}
	node.Content = append(node.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: path[0]}, child)
	if len(path) > 1 {
		return setPath(child, path[1:], v)
	}
	return nil
}
