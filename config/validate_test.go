package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"
)

func TestMinimalConfigIsValid(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	if cfg.Connector.Token != testConnectorToken || cfg.Appservice.ASToken != "as-secret" {
		t.Errorf("environment overrides not applied: %+v", cfg.Appservice)
	}
	if got := cfg.EnvOverrides()["connector.token"]; got != "DMBRIDGE_CONNECTOR_TOKEN" {
		t.Errorf("EnvOverrides()[connector.token] = %q", got)
	}
}

func TestValidationErrors(t *testing.T) {
	type change struct{ old, repl string }
	// Most cases add a top-level section (before permissions:, the last
	// one minimalYAML has) or keys of the connector section (after its
	// listen line); these spell those edits once.
	section := func(yaml string) []change { return []change{{"permissions:", yaml + "\npermissions:"}} }
	connectorKeys := func(yaml string) []change {
		return []change{{"  listen: 127.0.0.1:29334", "  listen: 127.0.0.1:29334\n" + yaml}}
	}
	tests := []struct {
		name    string
		changes []change
		env     map[string]string
		noEnv   bool // run without the default secrets
		want    string
	}{
		{
			name:    "wrong type",
			changes: []change{{"  port: 29333", `  port: "abc"`}},
			want:    `config.yaml: appservice.port: wrong type: want an integer, got "abc" (line 6)`,
		},
		{
			name:    "wrong type for a section",
			changes: []change{{"connector:", "connector: 5"}, {"  listen: 127.0.0.1:29334", ""}},
			want:    `config.yaml: connector: wrong type: want a mapping, got "5" (line 13)`,
		},
		{
			name:    "bad duration",
			changes: connectorKeys("  command_timeout: soon"),
			want:    `config.yaml: connector.command_timeout: not a duration: "soon" (want e.g. "30s", "5m" or "1h") (line 15)`,
		},
		{
			name:    "encryption.appservice without encryption.allow",
			changes: []change{{"  listen: 127.0.0.1:29334", "  listen: 127.0.0.1:29334\nencryption:\n  allow: false\n  appservice: true"}},
			want:    `config.yaml: encryption.appservice: needs encryption.allow: true`,
		},
		{
			name:    "no new ghost names from user queries",
			changes: []change{{"  id: dmbridge", "  id: dmbridge\n  new_ghost_queries:\n    burst: 0"}},
			want:    `config.yaml: appservice.new_ghost_queries.burst: must be at least 1, got 0`,
		},
		{
			name:    "user query budget never refilled",
			changes: []change{{"  id: dmbridge", "  id: dmbridge\n  new_ghost_queries:\n    every: 0s"}},
			want:    `config.yaml: appservice.new_ghost_queries.every: must be greater than 0, got 0s`,
		},
		{
			name:    "missing homeserver.address",
			changes: []change{{"  address: http://127.0.0.1:8008", ""}},
			want:    `config.yaml: homeserver.address: required but missing`,
		},
		{
			name:    "misspelt key gets a hint",
			changes: []change{{"  address: http://127.0.0.1:8008", "  adress: http://127.0.0.1:8008"}},
			want:    `config.yaml: homeserver.address: required but missing (is "homeserver.adress" on line 2 a typo?)`,
		},
		{
			name:    "empty homeserver.domain",
			changes: []change{{"  domain: localhost", `  domain: ""`}},
			want:    `config.yaml: homeserver.domain: required but empty`,
		},
		{
			name:    "missing appservice.address",
			changes: []change{{"  address: http://127.0.0.1:29333", ""}},
			want:    `config.yaml: appservice.address: required but missing`,
		},
		{
			name:    "missing appservice.port",
			changes: []change{{"  port: 29333", ""}},
			want:    `config.yaml: appservice.port: required but missing`,
		},
		{
			name:    "port out of range",
			changes: []change{{"  port: 29333", "  port: 70000"}},
			want:    `config.yaml: appservice.port: must be between 1 and 65535, got 70000`,
		},
		{
			name:    "missing appservice.id",
			changes: []change{{"  id: dmbridge", ""}},
			want:    `config.yaml: appservice.id: required but missing`,
		},
		{
			name:    "missing bot username",
			changes: []change{{"    username: dmbridgebot", ""}},
			want:    `config.yaml: appservice.bot.username: required but missing`,
		},
		{
			name:    "bot username not a localpart",
			changes: []change{{"    username: dmbridgebot", "    username: Bot"}},
			want:    `config.yaml: appservice.bot.username: not a valid Matrix localpart (a-z 0-9 . _ = - / +): "Bot"`,
		},
		{
			name:    "bot inside ghost namespace",
			changes: []change{{"    username: dmbridgebot", "    username: dm_bot"}},
			want:    `config.yaml: appservice.bot.username: "dm_bot" is inside the ghost namespace of ghosts.username_template "dm_{{.}}"; pick a name that does not match it`,
		},
		{
			// database.type and database.uri have defaults, so only an
			// explicitly empty value can fail.
			name:    "empty database.type",
			changes: []change{{"  type: sqlite3", `  type: ""`}},
			want:    `config.yaml: database.type: required but empty`,
		},
		{
			name:    "empty database.uri",
			changes: []change{{"  uri: file:test.db", `  uri: ""`}},
			want:    `config.yaml: database.uri: required but empty`,
		},
		{
			name:    "missing connector.listen",
			changes: []change{{"  listen: 127.0.0.1:29334", "  token: x"}},
			want:    `config.yaml: connector.listen: required but missing`,
		},
		{
			name:    "bad connector.listen",
			changes: []change{{"  listen: 127.0.0.1:29334", "  listen: localhost"}},
			want:    `config.yaml: connector.listen: not a host:port address: "localhost"`,
		},
		{
			name:    "connector.listen on the appservice port",
			changes: []change{{"  listen: 127.0.0.1:29334", "  listen: 0.0.0.0:29333"}},
			want:    `config.yaml: connector.listen: "0.0.0.0:29333" overlaps the appservice listener on port 29333; use another port`,
		},
		{
			name:    "unparsable homeserver URL",
			changes: []change{{"  address: http://127.0.0.1:8008", `  address: "ht!tp://"`}},
			want:    `config.yaml: homeserver.address: not a valid http(s) URL: "ht!tp://"`,
		},
		{
			name:    "URL without http scheme",
			changes: []change{{"  address: http://127.0.0.1:29333", "  address: 127.0.0.1:29333"}},
			want:    `config.yaml: appservice.address: not a valid http(s) URL: "127.0.0.1:29333"`,
		},
		{
			name:    "username_template without placeholder",
			changes: section("ghosts:\n  username_template: dm_"),
			want:    `config.yaml: ghosts.username_template: must contain {{.}} exactly once, found it 0 times: "dm_"`,
		},
		{
			name:    "username_template with placeholder twice",
			changes: section("ghosts:\n  username_template: \"{{.}}_{{.}}\""),
			want:    `config.yaml: ghosts.username_template: must contain {{.}} exactly once, found it 2 times: "{{.}}_{{.}}"`,
		},
		{
			name:    "username_template using the id twice",
			changes: section("ghosts:\n  username_template: \"x{{len .}}_{{.}}\""),
			want:    `config.yaml: ghosts.username_template: may use the contact id only through its single {{.}}: "x{{len .}}_{{.}}"`,
		},
		{
			name:    "username_template with no fixed text",
			changes: section("ghosts:\n  username_template: \"{{.}}\""),
			want:    `config.yaml: ghosts.username_template: needs fixed text around {{.}}, otherwise the bridge would claim every user on the server`,
		},
		{
			name:    "username_template with uppercase",
			changes: section("ghosts:\n  username_template: \"DM_{{.}}\""),
			want:    `config.yaml: ghosts.username_template: fixed text may only use a-z 0-9 . _ = - / +: "DM_{{.}}"`,
		},
		{
			name:    "displayname_template with unknown field",
			changes: section("ghosts:\n  displayname_template: \"{{.Nick}}\""),
			want:    `config.yaml: ghosts.displayname_template: cannot be rendered (fields are .Name and .ID)`,
		},
		{
			name:    "unknown database type",
			changes: []change{{"  type: sqlite3", "  type: mysql"}},
			want:    `config.yaml: database.type: unknown value "mysql" (want one of sqlite3-fk-wal, sqlite3, postgres)`,
		},
		{
			name:    "bad permission level",
			changes: []change{{"  localhost: user", "  localhost: superuser"}},
			want:    `config.yaml: permissions.localhost: unknown permission level "superuser" (want block, user or admin) (line 16)`,
		},
		{
			name:    "bad permission key",
			changes: []change{{"  localhost: user", `  "@bob": user`}},
			want:    `config.yaml: permissions.@bob: not a valid user id (want @user:server): "@bob"`,
		},
		{
			name:  "empty connector token",
			noEnv: true,
			env:   map[string]string{"DMBRIDGE_AS_TOKEN": "a", "DMBRIDGE_HS_TOKEN": "h"},
			want:  "config.yaml: connector.token: empty, and the bridge refuses to accept connectors without a token; set connector.token in config.yaml or the DMBRIDGE_CONNECTOR_TOKEN environment variable",
		},
		{
			name: "short connector token",
			env:  map[string]string{"DMBRIDGE_CONNECTOR_TOKEN": "hunter2"},
			want: "config.yaml: connector.token: too short (7 characters); use at least 32 random characters, e.g. from `openssl rand -hex 32`",
		},
		{
			name:    "short provisioning secret",
			changes: section("provisioning:\n  shared_secret: hunter2"),
			want:    "config.yaml: provisioning.shared_secret: too short (7 characters); use at least 32 random characters",
		},
		{
			name:    "listed connector without id",
			changes: connectorKeys("  connectors:\n  - token: " + testConnectorToken + "-b\n    allowed_servers: [localhost]"),
			want:    "config.yaml: connector.connectors[0].id: required but missing",
		},
		{
			name:    "listed connector with a short token",
			changes: connectorKeys("  connectors:\n  - id: xmpp\n    token: short\n    allowed_servers: [localhost]"),
			want:    "config.yaml: connector.connectors[0].token: too short (5 characters)",
		},
		{
			name:    "listed connector with the shared token",
			changes: connectorKeys("  connectors:\n  - id: xmpp\n    token: " + testConnectorToken + "\n    allowed_servers: [localhost]"),
			want:    "config.yaml: connector.connectors[0].token: the same token as connector.token or another connector",
		},
		{
			name:    "listed connector serving no one",
			changes: connectorKeys("  connectors:\n  - id: xmpp\n    token: " + testConnectorToken + "-b"),
			want:    "config.yaml: connector.connectors[0]: needs allowed_users or allowed_servers",
		},
		{
			name:    "listed connector with a bad user",
			changes: connectorKeys("  connectors:\n  - id: xmpp\n    token: " + testConnectorToken + "-b\n    allowed_users: [alice]"),
			want:    `config.yaml: connector.connectors[0].allowed_users[0]: not a valid user id (want @user:server): "alice"`,
		},
		{
			name:    "listed connector with a bad server",
			changes: connectorKeys("  connectors:\n  - id: xmpp\n    token: " + testConnectorToken + "-b\n    allowed_servers: [\"bad server\"]"),
			want:    `config.yaml: connector.connectors[0].allowed_servers[0]: not a valid Matrix server name: "bad server"`,
		},
		{
			name:    "listed connector twice",
			changes: connectorKeys("  connectors:\n  - {id: xmpp, token: " + testConnectorToken + "-b, allowed_servers: [localhost]}\n  - {id: xmpp, token: " + testConnectorToken + "-c, allowed_servers: [localhost]}"),
			want:    `config.yaml: connector.connectors[1].id: connector id "xmpp" is listed twice`,
		},
		{
			name:  "empty as_token",
			noEnv: true,
			env:   map[string]string{"DMBRIDGE_CONNECTOR_TOKEN": testConnectorToken},
			want:  "config.yaml: appservice.as_token: empty; run the bridge with -g first",
		},
		{
			name:    "negative frame size",
			changes: connectorKeys("  max_frame_bytes: -1"),
			want:    `config.yaml: connector.max_frame_bytes: must be greater than 0, got -1`,
		},
		{
			name:    "negative media size",
			changes: section("bridge:\n  max_media_bytes: -5"),
			want:    `config.yaml: bridge.max_media_bytes: must be greater than 0, got -5`,
		},
		{
			name:    "bad media fetch allowlist entry",
			changes: section("bridge:\n  media_fetch_allow: [10.0.0.0/8, 10.0.0.0/40]"),
			want:    `config.yaml: bridge.media_fetch_allow[1]: "10.0.0.0/40" is not a valid CIDR`,
		},
		{
			name:    "negative inline size",
			changes: section("bridge:\n  inline_media_bytes: -5"),
			want:    `config.yaml: bridge.inline_media_bytes: must not be negative, got -5`,
		},
		{
			name:    "negative repair interval",
			changes: section("bridge:\n  m_direct_repair_interval: -1h"),
			want:    `config.yaml: bridge.m_direct_repair_interval: must not be negative (0 disables the repair pass), got -1h0m0s`,
		},
		{
			name:    "zero in-doubt grace",
			changes: section("bridge:\n  in_doubt_grace: 0s"),
			want:    `config.yaml: bridge.in_doubt_grace: must be greater than 0, got 0s`,
		},
		{
			name:    "negative login alert delay",
			changes: section("bridge:\n  login_alert_after: -1m"),
			want:    `config.yaml: bridge.login_alert_after: must not be negative (0 turns disconnection alerts off), got -1m0s`,
		},
		{
			name:    "negative log summary interval",
			changes: section("logging:\n  summary_interval: -5m"),
			want:    `config.yaml: logging.summary_interval: must not be negative (0 turns the summary off), got -5m0s`,
		},
		{
			name:    "negative backfill limit",
			changes: section("bridge:\n  backfill:\n    initial_limit: -1"),
			want:    `config.yaml: bridge.backfill.initial_limit: must be between 0 (off) and 1000, got -1`,
		},
		{
			name:    "too many chats to sync",
			changes: section("bridge:\n  backfill:\n    sync_recent_chats: 101"),
			want:    `config.yaml: bridge.backfill.sync_recent_chats: must be between 0 (off) and 100, got 101`,
		},
		{
			name:    "negative backfill age",
			changes: section("bridge:\n  backfill:\n    max_age: -1h"),
			want:    `config.yaml: bridge.backfill.max_age: must not be negative (0 means no limit), got -1h0m0s`,
		},
		{
			name:    "bad double puppet secret",
			changes: section("double_puppet:\n  secrets:\n    example.org: hunter2"),
			want:    `config.yaml: double_puppet.secrets."example.org": must be "as_token:" followed by the token of an appservice on that server`,
		},
		{
			name:    "double puppet sync without secrets",
			changes: section("double_puppet:\n  sync: true"),
			want:    `config.yaml: double_puppet.sync: needs double_puppet.secrets: only double-puppeted users can be followed`,
		},
		{
			name:    "bad metrics.listen",
			changes: section("metrics:\n  listen: 9090"),
			want:    `config.yaml: metrics.listen: not a host:port address: "9090" (leave it empty to disable metrics)`,
		},
		{
			name:    "metrics.listen on the appservice port",
			changes: section("metrics:\n  listen: 0.0.0.0:29333"),
			want:    `config.yaml: metrics.listen: "0.0.0.0:29333" overlaps the appservice listener on port 29333; use another port`,
		},
		{
			name:    "metrics.listen on the connector port",
			changes: section("metrics:\n  listen: 127.0.0.1:29334"),
			want:    `config.yaml: metrics.listen: "127.0.0.1:29334" overlaps the connector listener "127.0.0.1:29334"; use another port`,
		},
		{
			name:    "bad log format",
			changes: section("logging:\n  format: xml"),
			want:    `config.yaml: logging.format: unknown value "xml" (want one of pretty, json)`,
		},
		{
			name:    "duplicate key",
			changes: []change{{"  id: dmbridge", "  id: dmbridge\n  id: other"}},
			want:    `config.yaml: appservice.id: duplicate key, first defined on line 7 (line 8)`,
		},
		{
			name:    "syntax error",
			changes: []change{{"  id: dmbridge", "  id: [dmbridge"}},
			want:    `config.yaml: line 6: did not find expected ',' or ']'`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := minimalYAML
			for _, c := range tt.changes {
				src = edit(t, src, c.old, c.repl)
			}
			env := testEnv(tt.env)
			if tt.noEnv {
				env = func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			}
			_, _, err := parse("config.yaml", []byte(src), env, modeRun)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.want) {
				t.Errorf("error:\n got %s\nwant %s", msg, tt.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if _, ok := errors.AsType[*Error](err); !ok {
				t.Errorf("error is %T, want *Error", err)
			}
		})
	}
}

func TestEnvKeyInErrors(t *testing.T) {
	src := edit(t, minimalYAML, "  uri: file:test.db", "")
	_, _, err := parse("config.yaml", []byte(src), testEnv(map[string]string{"DMBRIDGE_DATABASE_URI": "file:env.db"}), modeRun)
	if err != nil {
		t.Fatalf("DMBRIDGE_DATABASE_URI should satisfy database.uri: %v", err)
	}
	src = edit(t, minimalYAML, "  localhost: user", "")
	cfg, _, err := parse("config.yaml", []byte(src), testEnv(nil), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Connector.Listen = "nonsense"
	err = cfg.Validate()
	want := `config.yaml: connector.listen: not a host:port address: "nonsense"`
	if err == nil || err.Error() != want {
		t.Errorf("Validate after edit = %v, want %s", err, want)
	}
}

func TestRegistrationModeAllowsMissingTokens(t *testing.T) {
	if _, _, err := parse("config.yaml", []byte(minimalYAML), noEnv, modeRegistration); err != nil {
		t.Fatalf("registration mode: %v", err)
	}
	if _, _, err := parse("config.yaml", []byte(minimalYAML), noEnv, modeRun); err == nil {
		t.Fatal("run mode accepted a config without tokens")
	}
	// Everything else is still checked when generating.
	bad := edit(t, minimalYAML, "  type: sqlite3", "  type: mysql")
	if _, _, err := parse("config.yaml", []byte(bad), noEnv, modeRegistration); err == nil {
		t.Fatal("registration mode accepted an unknown database type")
	}
}

func TestMetricsListen(t *testing.T) {
	if cfg := mustParse(t, minimalYAML); cfg.Metrics.Listen != "" {
		t.Errorf("metrics.listen defaults to %q, want empty (off)", cfg.Metrics.Listen)
	}
	src := edit(t, minimalYAML, "permissions:", "metrics:\n  listen: 127.0.0.1:29335\npermissions:")
	if cfg := mustParse(t, src); cfg.Metrics.Listen != "127.0.0.1:29335" {
		t.Errorf("metrics.listen = %q", cfg.Metrics.Listen)
	}
}

// TestConnectorAccess: a listed connector may serve its users and servers
// only; an unlisted id (reached with the shared token) anyone permitted, and
// the listed connectors alone make a valid config without a shared token.
func TestConnectorAccess(t *testing.T) {
	src := edit(t, minimalYAML, "  listen: 127.0.0.1:29334", "  listen: 127.0.0.1:29334\n  connectors:\n"+
		"  - {id: a, token: "+testConnectorToken+"-a, allowed_users: [\"@bob:other.example\"], allowed_servers: [localhost]}")
	env := testEnv(map[string]string{"DMBRIDGE_CONNECTOR_TOKEN": ""})
	cfg, _, err := parse("config.yaml", []byte(src), env, modeRun)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		connector, user string
		want            bool
	}{
		{"a", "@alice:localhost", true},
		{"a", "@bob:other.example", true},
		{"a", "@carol:other.example", false},
		{"a", "@mallory:evil.example", false},
		{"shared", "@mallory:evil.example", true},
	} {
		if got := cfg.ConnectorMayServe(tc.connector, id.UserID(tc.user)); got != tc.want {
			t.Errorf("ConnectorMayServe(%s, %s) = %v, want %v", tc.connector, tc.user, got, tc.want)
		}
	}
	if tokens := cfg.ConnectorTokens(); tokens["a"] != testConnectorToken+"-a" || len(tokens) != 1 {
		t.Errorf("ConnectorTokens() = %v", tokens)
	}
}

// TestNewGhostQueries: the user-query budget defaults to 10 names at once
// and one every 6 s, and each key set replaces only its own default.
func TestNewGhostQueries(t *testing.T) {
	if got := mustParse(t, minimalYAML).Appservice.NewGhostQueries; got != (QueryBudget{Burst: 10, Every: Duration(6 * time.Second)}) {
		t.Errorf("default = %+v, want burst 10 every 6s", got)
	}
	cfg := mustParse(t, edit(t, minimalYAML, "  id: dmbridge", "  id: dmbridge\n  new_ghost_queries:\n    burst: 3"))
	if got := cfg.Appservice.NewGhostQueries; got != (QueryBudget{Burst: 3, Every: Duration(6 * time.Second)}) {
		t.Errorf("with burst 3 = %+v, want burst 3 every 6s", got)
	}
	cfg = mustParse(t, edit(t, minimalYAML, "  id: dmbridge", "  id: dmbridge\n  new_ghost_queries:\n    every: 1m"))
	if got := cfg.Appservice.NewGhostQueries; got != (QueryBudget{Burst: 10, Every: Duration(time.Minute)}) {
		t.Errorf("with every 1m = %+v, want burst 10 every 1m", got)
	}
}
