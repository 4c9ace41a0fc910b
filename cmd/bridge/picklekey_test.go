package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
)

// TestEnsurePickleKey: an install whose config predates encryption gets the
// key written into its config file at start, once; under high availability
// (instances must share the key) and with encryption off nothing is written.
func TestEnsurePickleKey(t *testing.T) {
	load := func(t *testing.T, edit func(string) string) (*config.Config, string) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "config.yaml")
		writeFile(t, path, edit(string(config.ExampleConfig())), 0o600)
		cfg, _, err := config.LoadForRegistration(path)
		if err != nil {
			t.Fatal(err)
		}
		return cfg, path
	}
	var logs bytes.Buffer
	log := zerolog.New(&logs)

	cfg, path := load(t, func(s string) string { return s })
	ensurePickleKey(cfg, log)
	data, _ := os.ReadFile(path)
	if len(cfg.Encryption.PickleKey) < 40 || !strings.Contains(string(data), `pickle_key: "`+cfg.Encryption.PickleKey+`"`) {
		t.Fatalf("pickle key %q not saved into the config:\n%s", cfg.Encryption.PickleKey, data)
	}
	key := cfg.Encryption.PickleKey
	again, _, err := config.LoadForRegistration(path)
	if err != nil {
		t.Fatal(err)
	}
	ensurePickleKey(again, log)
	if again.Encryption.PickleKey != key {
		t.Fatalf("a second start changed the key: %q, want %q", again.Encryption.PickleKey, key)
	}

	for name, edit := range map[string]func(string) string{
		"ha": func(s string) string {
			s = strings.Replace(s, "  type: sqlite3-fk-wal", "  type: postgres", 1)
			s = strings.Replace(s, "  uri: file:dmbridge.db?_txlock=immediate", "  uri: postgres://postgres@127.0.0.1/dmbridge", 1)
			return strings.Replace(s, "postgres.\n  enabled: false", "postgres.\n  enabled: true", 1)
		},
		"off": func(s string) string { return strings.Replace(s, "  allow: true", "  allow: false", 1) },
	} {
		cfg, path := load(t, edit)
		before, _ := os.ReadFile(path)
		logs.Reset()
		ensurePickleKey(cfg, log)
		after, _ := os.ReadFile(path)
		if cfg.Encryption.PickleKey != "" || !bytes.Equal(before, after) {
			t.Errorf("%s: key %q, config changed %v; want nothing written", name, cfg.Encryption.PickleKey, !bytes.Equal(before, after))
		}
		if name == "ha" && !strings.Contains(logs.String(), "every instance") {
			t.Errorf("ha: no warning telling the operator to set the key: %s", logs.String())
		}
	}
}
