package config

import (
	"reflect"
	"testing"
	"time"
)

func TestDefaultsFillUnsetKeys(t *testing.T) {
	cfg := mustParse(t, minimalYAML)
	d := Default()
	if cfg.Connector.MaxFrameBytes != 1048576 || cfg.Connector.MaxInFlight != 256 ||
		cfg.Connector.CommandTimeout.D() != 60*time.Second {
		t.Errorf("connector defaults: %+v", cfg.Connector)
	}
	if cfg.Ghosts != d.Ghosts || cfg.Ghosts.UsernameTemplate != "dm_{{.}}" {
		t.Errorf("ghost defaults: %+v", cfg.Ghosts)
	}
	if !cfg.Appservice.EphemeralEvents {
		t.Error("ephemeral_events should default to true")
	}
	if cfg.Logging != (LoggingConfig{Level: "info", Format: "pretty", SummaryInterval: Duration(5 * time.Minute)}) {
		t.Errorf("logging defaults: %+v", cfg.Logging)
	}
	if !reflect.DeepEqual(cfg.Bridge, d.Bridge) || cfg.Bridge.MaxMediaBytes != 100<<20 || cfg.Bridge.InlineMediaBytes != 512<<10 ||
		cfg.Bridge.MDirectRepairInterval.D() != time.Hour || cfg.Bridge.HomeserverConcurrency != 16 || cfg.Bridge.BridgePresence ||
		cfg.Bridge.LoginAlertAfter.D() != 10*time.Minute {
		t.Errorf("bridge defaults: %+v", cfg.Bridge)
	}
	if def := Default().Database; def.Type != "sqlite3-fk-wal" || def.URI != "file:dmbridge.db?_txlock=immediate" {
		t.Errorf("database defaults: %+v", def)
	}
}

func TestExplicitValuesOverrideDefaults(t *testing.T) {
	src := minimalYAML + `bridge:
  m_direct_repair_interval: 0
  bridge_own_presence: true
appservice_typo: 1
ghosts:
  username_template: "{{.}}_dm"
  extra: x
`
	cfg, warnings, err := parse("config.yaml", []byte(src), testEnv(nil), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Bridge.MDirectRepairInterval != 0 || !cfg.Bridge.BridgePresence {
		t.Errorf("bridge: %+v", cfg.Bridge)
	}
	if cfg.Bridge.MaxMediaBytes != 100<<20 {
		t.Error("a partial section must keep the defaults of the keys it omits")
	}
	want := []string{
		"config.yaml: appservice_typo: unknown key, ignored (line 20)",
		"config.yaml: ghosts.extra: unknown key, ignored (line 23)",
	}
	if len(warnings) != len(want) {
		t.Fatalf("warnings = %v, want %v", warnings, want)
	}
	for i, w := range warnings {
		if w.String() != want[i] {
			t.Errorf("warning %d = %q, want %q", i, w.String(), want[i])
		}
	}
}

func TestNullKeepsDefault(t *testing.T) {
	cfg := mustParse(t, minimalYAML+"logging:\n  level:\nbridge: ~\n")
	if cfg.Logging.Level != "info" || cfg.Bridge.HomeserverConcurrency != 16 {
		t.Errorf("null should leave defaults alone: %+v %+v", cfg.Logging, cfg.Bridge)
	}
}

func TestAnchorsAndMergeKeys(t *testing.T) {
	src := `base: &hs
  address: http://hs.example:8008
  domain: example.org
homeserver:
  <<: *hs
  domain: override.example
appservice:
  address: http://127.0.0.1:29333
  port: 29333
  id: dmbridge
  bot: {username: bot}
connector: {listen: "127.0.0.1:1"}
`
	cfg, warnings, err := parse("c.yaml", []byte(src), testEnv(nil), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Homeserver.Address != "http://hs.example:8008" || cfg.Homeserver.Domain != "override.example" {
		t.Errorf("merge: %+v", cfg.Homeserver)
	}
	if len(warnings) != 1 || warnings[0].Key != "base" {
		t.Errorf("warnings = %v, want one for base", warnings)
	}
}

func TestEmptyFileReportsFirstRequiredKey(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "~\n"} {
		_, _, err := parse("c.yaml", []byte(src), testEnv(nil), modeRun)
		if err == nil || err.Error() != "c.yaml: homeserver.address: required but missing" {
			t.Errorf("%q: err = %v", src, err)
		}
	}
	_, _, err := parse("c.yaml", []byte("- a\n"), testEnv(nil), modeRun)
	if err == nil || err.Error() != `c.yaml: wrong type: want a mapping, got a list (line 1)` {
		t.Errorf("list at top level: err = %v", err)
	}
}

func TestMapKeysWithDotsAreQuoted(t *testing.T) {
	src := minimalYAML + "  example.org: [admin]\n"
	_, _, err := parse("c.yaml", []byte(src), testEnv(nil), modeRun)
	want := `c.yaml: permissions."example.org": wrong type: want block, user or admin, got a list (line 17)`
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
}
