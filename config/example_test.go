package config

import (
	"bytes"
	"os"
	"reflect"
	"testing"
)

func TestRootExampleConfigIsCopy(t *testing.T) {
	root, err := os.ReadFile("../example-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, ExampleConfig()) {
		t.Error("../example-config.yaml differs from config/example-config.yaml; edit the latter and run `go generate ./config`")
	}
}

func TestExampleConfigValidates(t *testing.T) {
	cfg, warnings, err := parse("example-config.yaml", ExampleConfig(), testEnv(nil), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) > 0 {
		t.Errorf("example has unknown keys: %v", warnings)
	}
	if cfg.Homeserver != (HomeserverConfig{Address: "http://127.0.0.1:8008", Domain: "localhost"}) {
		t.Errorf("homeserver: %+v", cfg.Homeserver)
	}
	if cfg.Appservice.Address != "http://127.0.0.1:29333" || cfg.Appservice.Port != 29333 || cfg.Appservice.ID != "dmbridge" ||
		cfg.Appservice.Bot.Username != "dmbridgebot" || cfg.Appservice.Bot.Displayname != "DM bridge bot" {
		t.Errorf("appservice: %+v", cfg.Appservice)
	}
	if cfg.Connector.Listen != "127.0.0.1:29334" {
		t.Errorf("connector.listen: %q", cfg.Connector.Listen)
	}
	if !reflect.DeepEqual(cfg.Permissions, Permissions{"localhost": LevelUser}) {
		t.Errorf("permissions: %v", cfg.Permissions)
	}
	// The example documents the defaults, so it must not contradict them.
	d := Default()
	if cfg.Ghosts != d.Ghosts || cfg.Database != d.Database || !reflect.DeepEqual(cfg.Bridge.MediaFetchAllow, []string{}) ||
		cfg.Bridge.MaxMediaBytes != d.Bridge.MaxMediaBytes || cfg.Bridge.InlineMediaBytes != d.Bridge.InlineMediaBytes ||
		cfg.Bridge.MDirectRepairInterval != d.Bridge.MDirectRepairInterval || cfg.Bridge.HomeserverConcurrency != d.Bridge.HomeserverConcurrency ||
		cfg.Bridge.BridgePresence != d.Bridge.BridgePresence || cfg.Logging != d.Logging ||
		cfg.Connector.MaxFrameBytes != d.Connector.MaxFrameBytes || cfg.Connector.MaxInFlight != d.Connector.MaxInFlight ||
		cfg.Connector.CommandTimeout != d.Connector.CommandTimeout ||
		cfg.Appservice.Hostname != d.Appservice.Hostname || cfg.Appservice.EphemeralEvents != d.Appservice.EphemeralEvents ||
		cfg.Appservice.NewGhostQueries != d.Appservice.NewGhostQueries {
		t.Errorf("example values differ from Default():\n%+v\n%+v", cfg, d)
	}
	if e := cfg.Encryption; e.Allow != d.Encryption.Allow || e.Default != d.Encryption.Default ||
		e.Require != d.Encryption.Require || e.Appservice != d.Encryption.Appservice {
		t.Errorf("example encryption %+v differs from Default() %+v", e, d.Encryption)
	}
}

func TestExampleConfigNeedsTokens(t *testing.T) {
	if _, _, err := parse("example-config.yaml", ExampleConfig(), noEnv, modeRegistration); err != nil {
		t.Errorf("example should be usable for -g as is: %v", err)
	}
	if _, _, err := parse("example-config.yaml", ExampleConfig(), noEnv, modeRun); err == nil {
		t.Error("example ran without tokens")
	}
}
