package config

import (
	"strings"
	"testing"
)

func TestListenEnvOverrides(t *testing.T) {
	cfg, _, err := parse("config.yaml", []byte(minimalYAML), testEnv(map[string]string{
		"DMBRIDGE_APPSERVICE_HOSTNAME": "127.0.0.2",
		"DMBRIDGE_APPSERVICE_PORT":     "29400",
		"DMBRIDGE_CONNECTOR_LISTEN":    "127.0.0.2:29401",
		"DMBRIDGE_METRICS_LISTEN":      "127.0.0.2:29402",
	}), modeRun)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Appservice.Hostname != "127.0.0.2" || cfg.Appservice.Port != 29400 || cfg.Connector.Listen != "127.0.0.2:29401" ||
		cfg.Metrics.Listen != "127.0.0.2:29402" {
		t.Errorf("overrides not applied: %s:%d, %s, %s", cfg.Appservice.Hostname, cfg.Appservice.Port, cfg.Connector.Listen, cfg.Metrics.Listen)
	}
	if got := cfg.EnvOverrides()["appservice.port"]; got != "DMBRIDGE_APPSERVICE_PORT" {
		t.Errorf("appservice.port recorded as from %q", got)
	}
	_, _, err = parse("config.yaml", []byte(minimalYAML), testEnv(map[string]string{"DMBRIDGE_APPSERVICE_PORT": "http"}), modeRun)
	if err == nil || !strings.Contains(err.Error(), `DMBRIDGE_APPSERVICE_PORT: must be a port between 1 and 65535, got "http"`) {
		t.Errorf("bad port variable: %v", err)
	}
}

func TestHANeedsPostgres(t *testing.T) {
	src := minimalYAML + "ha:\n  enabled: true\n"
	_, _, err := parse("config.yaml", []byte(src), testEnv(nil), modeRun)
	if err == nil || !strings.Contains(err.Error(), "ha.enabled: needs database.type postgres") {
		t.Errorf("ha on SQLite: %v", err)
	}
	src = minimalYAML + "ha:\n  enabled: true\n  lease: 4s\n  renew: 3s\n"
	src = strings.Replace(src, "type: sqlite3", "type: postgres", 1)
	_, _, err = parse("config.yaml", []byte(src), testEnv(nil), modeRun)
	if err == nil || !strings.Contains(err.Error(), "ha.renew: must be") {
		t.Errorf("renew longer than half the lease: %v", err)
	}
}
