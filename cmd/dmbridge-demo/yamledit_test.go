package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestEditYAMLKeepsCommentsAndSetsNestedKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	orig := "# top\nappservice:\n  # the port\n  port: 29333\n  address: http://x\ndouble_puppet:\n  secrets: {}\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	err := editYAML(path, map[string]any{
		"appservice.port":       4242,
		"double_puppet.secrets": map[string]string{"localhost": "as_token:abc"},
		"logging.format":        "json",
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# top", "# the port"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("comment %q lost:\n%s", want, data)
		}
	}
	var got struct {
		Appservice struct {
			Port    int    `yaml:"port"`
			Address string `yaml:"address"`
		} `yaml:"appservice"`
		DoublePuppet struct {
			Secrets map[string]string `yaml:"secrets"`
		} `yaml:"double_puppet"`
		Logging struct {
			Format string `yaml:"format"`
		} `yaml:"logging"`
	}
	if err := yaml.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.Appservice.Port != 4242 || got.Appservice.Address != "http://x" ||
		got.DoublePuppet.Secrets["localhost"] != "as_token:abc" || got.Logging.Format != "json" {
		t.Errorf("edited config reads back as %+v", got)
	}
}
