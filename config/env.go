package config

import (
	"fmt"
	"maps"
	"strconv"
)

// envOverride ties a secret-bearing key to the environment variable that
// replaces it, so deployments can keep secrets out of the file.
type envOverride struct {
	variable, key string
	field         func(*Config) *string
}

var envOverrides = [...]envOverride{
	{"DMBRIDGE_CONNECTOR_TOKEN", "connector.token", func(c *Config) *string { return &c.Connector.Token }},
	{"DMBRIDGE_AS_TOKEN", "appservice.as_token", func(c *Config) *string { return &c.Appservice.ASToken }},
	{"DMBRIDGE_HS_TOKEN", "appservice.hs_token", func(c *Config) *string { return &c.Appservice.HSToken }},
	{"DMBRIDGE_PROVISIONING_SECRET", "provisioning.shared_secret", func(c *Config) *string { return &c.Provisioning.SharedSecret }},
	{"DMBRIDGE_DATABASE_URI", "database.uri", func(c *Config) *string { return &c.Database.URI }},
	{"DMBRIDGE_PICKLE_KEY", "encryption.pickle_key", func(c *Config) *string { return &c.Encryption.PickleKey }},
	// Listen addresses, so that instances sharing one config file (high
	// availability) can each have their own.
	{"DMBRIDGE_APPSERVICE_HOSTNAME", "appservice.hostname", func(c *Config) *string { return &c.Appservice.Hostname }},
	{"DMBRIDGE_CONNECTOR_LISTEN", "connector.listen", func(c *Config) *string { return &c.Connector.Listen }},
	{"DMBRIDGE_METRICS_LISTEN", "metrics.listen", func(c *Config) *string { return &c.Metrics.Listen }},
}

// portEnv overrides appservice.port; it is the one numeric override.
const portEnv = "DMBRIDGE_APPSERVICE_PORT"

// applyEnv replaces keys from the environment. An empty variable counts as
// unset: an accidentally blank variable should not wipe a value from the file.
func (c *Config) applyEnv(lookup lookupEnvFunc) {
	for _, o := range envOverrides {
		if v, ok := lookup(o.variable); ok && v != "" {
			*o.field(c) = v
			if c.envKeys == nil {
				c.envKeys = make(map[string]string)
			}
			c.envKeys[o.key] = o.variable
		}
	}
	if v, ok := lookup(portEnv); ok && v != "" {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			c.envErr = fmt.Errorf("%s: must be a port between 1 and 65535, got %q", portEnv, v)
			return
		}
		c.Appservice.Port = port
		if c.envKeys == nil {
			c.envKeys = make(map[string]string)
		}
		c.envKeys["appservice.port"] = portEnv
	}
}

// EnvOverrides maps each dotted key that was taken from the environment to
// the variable it came from.
func (c *Config) EnvOverrides() map[string]string {
	return maps.Clone(c.envKeys)
}
