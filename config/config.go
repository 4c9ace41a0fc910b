// Package config loads, validates and derives values from the bridge's YAML
// configuration file. Everything the rest of the bridge needs to know about
// naming (ghost user ids, the bot, permissions) lives here so that the
// registration given to the homeserver and the bridge's runtime behaviour can
// never disagree.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// Config is the whole bridge configuration.
type Config struct {
	Homeserver   HomeserverConfig   `yaml:"homeserver"`
	Appservice   AppserviceConfig   `yaml:"appservice"`
	Ghosts       GhostsConfig       `yaml:"ghosts"`
	Database     DatabaseConfig     `yaml:"database"`
	Connector    ConnectorConfig    `yaml:"connector"`
	DoublePuppet DoublePuppetConfig `yaml:"double_puppet"`
	// Permissions maps "*", a server name or a full user id to a Level.
	Permissions  Permissions        `yaml:"permissions"`
	Bridge       BridgeConfig       `yaml:"bridge"`
	Provisioning ProvisioningConfig `yaml:"provisioning"`
	Metrics      MetricsConfig      `yaml:"metrics"`
	Logging      LoggingConfig      `yaml:"logging"`
	HA           HAConfig           `yaml:"ha"`
	Encryption   EncryptionConfig   `yaml:"encryption"`

	// Path is the file the config was loaded from; SaveTokens rewrites it and
	// every error message names it.
	Path string `yaml:"-"`

	// envKeys records which keys were replaced from the environment (key
	// path -> variable), so SaveTokens can refuse to write a value the
	// environment would shadow.
	envKeys map[string]string
	// envErr is an environment variable that could not be used.
	envErr error
	// presentKeys holds every key the file set (key path -> line), so a
	// required key can be reported as empty rather than missing.
	presentKeys map[string]int
	// unknownKeys feeds the "did you mean" hint for missing required keys.
	unknownKeys []Warning
	// Compiled templates, filled by Validate. Each remembers its source text
	// so a later edit of the field is noticed instead of silently ignored.
	ghostTmpl   *ghostTemplate
	displayTmpl *displayTemplate
}

// EncryptionConfig is end-to-bridge encryption: each ghost in an encrypted
// room gets a device of its own (see package e2ee).
type EncryptionConfig struct {
	// Allow joins and serves encrypted rooms; without it the user is told
	// that encrypted messages are not delivered.
	Allow bool `yaml:"allow"`
	// Default makes portals the bridge creates encrypted from the start.
	Default bool `yaml:"default"`
	// Require refuses unencrypted messages in portals.
	Require bool `yaml:"require"`
	// Appservice takes the ghosts' to-device messages, device-list changes
	// and one-time-key counts from the homeserver's transactions
	// (MSC2409/MSC3202, Synapse with its experimental flags) instead of a
	// /sync loop per ghost device. The registration must ask for them.
	Appservice bool `yaml:"appservice"`
	// PickleKey encrypts the Olm/Megolm keys stored in the database; -g
	// generates it.
	PickleKey string `yaml:"pickle_key"`
}

// HomeserverConfig says where the homeserver is and what server name it has.
type HomeserverConfig struct {
	Address string `yaml:"address"`
	Domain  string `yaml:"domain"`
}

// AppserviceConfig describes the bridge's appservice HTTP listener and the
// registration the homeserver knows it by.
type AppserviceConfig struct {
	// Address is the URL the homeserver uses to reach the bridge.
	Address string `yaml:"address"`
	// Hostname and Port are where the bridge listens.
	Hostname string    `yaml:"hostname"`
	Port     int       `yaml:"port"`
	ID       string    `yaml:"id"`
	Bot      BotConfig `yaml:"bot"`
	ASToken  string    `yaml:"as_token"`
	HSToken  string    `yaml:"hs_token"`
	// EphemeralEvents asks the homeserver to push typing notifications,
	// receipts and presence (receive_ephemeral in the registration).
	EphemeralEvents bool `yaml:"ephemeral_events"`
	// NewGhostQueries bounds the ghost names the bridge says exist when the
	// homeserver asks about a name it has never seen.
	NewGhostQueries QueryBudget `yaml:"new_ghost_queries"`
}

// QueryBudget is a token bucket for the homeserver's user queries about
// ghost names the bridge has never seen. The homeserver asks on behalf of
// any local user without saying who, and each "yes" costs an account and,
// with encryption, a device: Burst names at once, then one every Every.
type QueryBudget struct {
	Burst int      `yaml:"burst"`
	Every Duration `yaml:"every"`
}

// BotConfig is the bridge bot's own Matrix profile.
type BotConfig struct {
	Username    string `yaml:"username"`
	Displayname string `yaml:"displayname"`
	Avatar      string `yaml:"avatar"`
}

// GhostsConfig names the Matrix users that stand in for remote contacts.
type GhostsConfig struct {
	// UsernameTemplate is a text/template applied to the escaped contact id;
	// it must contain {{.}} exactly once.
	UsernameTemplate string `yaml:"username_template"`
	// DisplaynameTemplate gets .Name (the contact's name) and .ID (its raw id).
	DisplaynameTemplate string `yaml:"displayname_template"`
}

// DatabaseConfig selects the bridge database.
type DatabaseConfig struct {
	Type         string `yaml:"type"`
	URI          string `yaml:"uri"`
	MaxOpenConns int    `yaml:"max_open_conns"`
	MaxIdleConns int    `yaml:"max_idle_conns"`
}

// ConnectorConfig is the websocket endpoint connectors dial into.
type ConnectorConfig struct {
	Listen string `yaml:"listen"`
	// Token is the shared token: a connector that presents it may use any
	// connector id not listed in Connectors and serve every user the
	// permissions allow.
	Token string `yaml:"token"`
	// Connectors gives single connectors a token of their own and limits
	// the Matrix users they may serve.
	Connectors     []ConnectorAccess `yaml:"connectors"`
	MaxFrameBytes  int64             `yaml:"max_frame_bytes"`
	MaxInFlight    int               `yaml:"max_in_flight"`
	CommandTimeout Duration          `yaml:"command_timeout"`
}

// DoublePuppetConfig maps a server name to "as_token:<token>" of an
// appservice on that server that may act as its users.
type DoublePuppetConfig struct {
	Secrets map[string]string `yaml:"secrets"`
	// Sync follows each double-puppeted user's /sync for the user's
	// redactions, typing and read receipts in portals: for homeservers
	// that do not push them to appservices (Dendrite). See dpsync.
	Sync bool `yaml:"sync"`
}

// BridgeConfig holds the bridging behaviour knobs.
type BridgeConfig struct {
	MaxMediaBytes    int64 `yaml:"max_media_bytes"`
	InlineMediaBytes int64 `yaml:"inline_media_bytes"`
	// MDirectRepairInterval is how often m.direct and the users' membership
	// of their portals are re-checked; 0 disables the periodic pass.
	MDirectRepairInterval Duration `yaml:"m_direct_repair_interval"`
	BridgePresence        bool     `yaml:"bridge_own_presence"`
	// HomeserverConcurrency caps homeserver calls in flight.
	HomeserverConcurrency int `yaml:"homeserver_concurrency"`
	// MediaFetchAllow opens addresses that fetches of attachment and avatar
	// URLs otherwise refuse (loopback, private, link-local...): CIDRs,
	// addresses, host names, each optionally with a port. See netguard.
	MediaFetchAllow []string `yaml:"media_fetch_allow"`
	// InDoubtGrace is how long after a cut-off send (the bridge died, or its
	// request timed out or lost its connection) whose event is not in the
	// room the bridge waits before it looks again and sends again if it is
	// still not there: the homeserver may still be storing the event of a
	// request it saw cancelled. See portal/indoubt.go.
	InDoubtGrace Duration `yaml:"in_doubt_grace"`
	// LoginAlertAfter is how long a login may stay disconnected before its
	// user is told in their management room; 0 turns these alerts off
	// (bad_credentials is reported either way). See portal/loginwatch.go.
	LoginAlertAfter Duration `yaml:"login_alert_after"`
	// RetryMaxDelay caps the wait between tries of an event that failed for
	// a passing reason (homeserver down, database down); such an event is
	// retried until it goes through.
	RetryMaxDelay Duration `yaml:"retry_max_delay"`
	// Backfill: the history a new portal starts with. See portal/backfill.go.
	Backfill BackfillConfig `yaml:"backfill"`
}

// BackfillConfig says how much history a new portal gets.
type BackfillConfig struct {
	// InitialLimit is how many earlier messages a new portal gets; 0 turns
	// backfill off.
	InitialLimit int `yaml:"initial_limit"`
	// MaxAge leaves out messages older than this; 0 means no age limit.
	MaxAge Duration `yaml:"max_age"`
	// SyncRecentChats is how many of its most recent chats a login that
	// connects for the first time gets as portals (with history), if the
	// connector can list them; 0 turns it off.
	SyncRecentChats int `yaml:"sync_recent_chats"`
}

// ProvisioningConfig configures the provisioning API.
type ProvisioningConfig struct {
	// SharedSecret enables the shared-secret mode; empty disables it.
	SharedSecret string `yaml:"shared_secret"`
}

// MetricsConfig configures the Prometheus and pprof listener.
type MetricsConfig struct {
	// Listen is the host:port of the metrics listener; empty (the default)
	// disables it.
	Listen string `yaml:"listen"`
}

// HAConfig turns on high availability: several instances with the same
// config against the same PostgreSQL database, one of them active.
type HAConfig struct {
	// Enabled makes this instance take part in the election; it requires
	// database.type postgres.
	Enabled bool `yaml:"enabled"`
	// Lease is how long the active's lease lasts without renewal; a standby
	// takes over this long after the active stopped renewing.
	Lease Duration `yaml:"lease"`
	// Renew is how often the active renews its lease.
	Renew Duration `yaml:"renew"`
}

// LoggingConfig configures the bridge's zerolog output.
type LoggingConfig struct {
	Level string `yaml:"level"`
	// Format is "pretty" or "json".
	Format string `yaml:"format"`
	// File, if set, receives the log in addition to stderr.
	File string `yaml:"file"`
	// SummaryInterval is how often an info line sums up the messages
	// bridged since the last one (each message itself is logged at debug);
	// 0 turns the summary off. Nothing is logged for an idle interval.
	SummaryInterval Duration `yaml:"summary_interval"`
}

// Default returns a config holding every default value. It is not valid on
// its own: the keys without a sensible default are left empty.
func Default() *Config {
	return &Config{
		Appservice: AppserviceConfig{
			Hostname:        "127.0.0.1",
			EphemeralEvents: true,
			// A few new contacts a minute is far more than people start
			// chats with; a script trying made-up names gets a few
			// accounts, then "no such user" until the budget refills.
			NewGhostQueries: QueryBudget{Burst: 10, Every: Duration(6 * time.Second)},
		},
		Ghosts: GhostsConfig{
			UsernameTemplate:    "dm_{{.}}",
			DisplaynameTemplate: "{{.Name}}",
		},
		Encryption: EncryptionConfig{Allow: true},
		Database: DatabaseConfig{
			Type:         "sqlite3-fk-wal",
			URI:          "file:dmbridge.db?_txlock=immediate",
			MaxOpenConns: 20,
			// As many as may be open: a pool that closes what it cannot
			// keep idle opens a new session for each burst of queries.
			MaxIdleConns: 20,
		},
		Connector: ConnectorConfig{
			MaxFrameBytes:  connector.DefaultMaxFrameBytes,
			MaxInFlight:    connector.DefaultMaxInFlight,
			CommandTimeout: Duration(60 * time.Second),
		},
		Bridge: BridgeConfig{
			MaxMediaBytes:         100 << 20,
			InlineMediaBytes:      512 << 10,
			MDirectRepairInterval: Duration(time.Hour),
			HomeserverConcurrency: 16,
			InDoubtGrace:          Duration(15 * time.Second),
			LoginAlertAfter:       Duration(10 * time.Minute),
			RetryMaxDelay:         Duration(30 * time.Second),
			Backfill:              BackfillConfig{InitialLimit: 50, SyncRecentChats: 10},
		},
		Logging: LoggingConfig{
			Level:           "info",
			Format:          "pretty",
			SummaryInterval: Duration(5 * time.Minute),
		},
		HA: HAConfig{Lease: Duration(3 * time.Second), Renew: Duration(time.Second)},
	}
}

// Load reads, parses and validates the config for running the bridge.
func Load(path string) (*Config, []Warning, error) {
	return load(path, modeRun)
}

// LoadForRegistration is Load for -g: the appservice and connector tokens may
// still be empty because generating the registration is what fills them in.
func LoadForRegistration(path string) (*Config, []Warning, error) {
	return load(path, modeRegistration)
}

func load(path string, mode validationMode) (*Config, []Warning, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%s: cannot read config: file does not exist (start from the example: bridge -e > %s)", path, path)
	} else if err != nil {
		return nil, nil, fmt.Errorf("%s: cannot read config: %w", path, err)
	}
	return parse(path, data, os.LookupEnv, mode)
}

// lookupEnvFunc has the signature of os.LookupEnv; tests pass their own so
// they need not touch the process environment.
type lookupEnvFunc func(string) (string, bool)

func parse(path string, data []byte, lookupEnv lookupEnvFunc, mode validationMode) (*Config, []Warning, error) {
	cfg := Default()
	cfg.Path = path
	d, err := decodeYAML(path, data, cfg)
	if err != nil {
		return nil, d.warnings, err
	}
	warnings := d.warnings
	cfg.unknownKeys = warnings
	cfg.presentKeys = d.present
	cfg.applyEnv(lookupEnv)
	if cfg.envErr != nil {
		return nil, warnings, cfg.envErr
	}
	if err := cfg.validate(mode); err != nil {
		return nil, warnings, err
	}
	return cfg, warnings, nil
}
