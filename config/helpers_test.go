package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// minimalYAML is the smallest config that validates (given the tokens from
// testEnv); tests edit it line by line.
const minimalYAML = `homeserver:
  address: http://127.0.0.1:8008
  domain: localhost
appservice:
  address: http://127.0.0.1:29333
  port: 29333
  id: dmbridge
  bot:
    username: dmbridgebot
database:
  type: sqlite3
  uri: file:test.db
connector:
  listen: 127.0.0.1:29334
permissions:
  localhost: user
`

// testConnectorToken is long enough for MinSecretLength.
const testConnectorToken = "connector-secret-0123456789abcdef"

// testEnv supplies the secrets a running bridge needs.
func testEnv(extra map[string]string) lookupEnvFunc {
	env := map[string]string{
		"DMBRIDGE_AS_TOKEN":        "as-secret",
		"DMBRIDGE_HS_TOKEN":        "hs-secret",
		"DMBRIDGE_CONNECTOR_TOKEN": testConnectorToken,
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// edit replaces the line that equals old (ignoring indentation when old
// itself has none) with repl; an empty repl deletes the line.
func edit(t *testing.T, src, old, repl string) string {
	t.Helper()
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		if l == old {
			if repl == "" {
				return strings.Join(append(lines[:i:i], lines[i+1:]...), "\n")
			}
			lines[i] = repl
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("line %q not found in test config", old)
	return ""
}

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, _, err := parse("config.yaml", []byte(src), testEnv(nil), modeRun)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return cfg
}

// worldReadable writes content to a new file name in a temporary directory
// with mode 0644, as a file an operator made by hand would be, and returns
// its path.
func worldReadable(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantPrivate fails the test unless the file at path has mode 0600: a file
// the bridge writes tokens into must not stay readable by others.
func wantPrivate(t *testing.T, path string) {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", info.Mode().Perm())
	}
}

// saveTokens loads the config file at path (with src as its content and env
// as the environment), generates the registration's tokens and saves them
// into the file, as -g does.
func saveTokens(t *testing.T, path, src string, env lookupEnvFunc) (*Config, error) {
	t.Helper()
	cfg, _, err := parse(path, []byte(src), env, modeRegistration)
	if err != nil {
		t.Fatal(err)
	}
	cfg.GenerateRegistration()
	return cfg, cfg.SaveTokens()
}

// noEnv is an environment without any variable.
func noEnv(string) (string, bool) { return "", false }
