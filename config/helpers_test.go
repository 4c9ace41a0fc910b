package config

import (
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
