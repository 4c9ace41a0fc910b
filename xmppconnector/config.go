package xmppconnector

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/netguard"
)

// Config is the connector's YAML configuration; xmpp-connector.example.yaml
// documents every field.
type Config struct {
	Bridge   BridgeConfig    `yaml:"bridge"`
	Database string          `yaml:"database"`
	XMPP     XMPPConfig      `yaml:"xmpp"`
	Avatars  AvatarConfig    `yaml:"avatars"`
	Accounts []AccountConfig `yaml:"accounts"`
	LogLevel string          `yaml:"log_level"`
}

// BridgeConfig says where the bridge's connector listener is.
type BridgeConfig struct {
	URL         string `yaml:"url"`
	Token       string `yaml:"token"`
	TokenFile   string `yaml:"token_file"`
	ConnectorID string `yaml:"connector_id"`
}

// TLS modes for the XMPP connection.
const (
	TLSStartTLS  = "starttls"
	TLSDirect    = "direct"
	TLSPlaintext = "plaintext"
)

// XMPPConfig says how to reach the XMPP server.
type XMPPConfig struct {
	// Server is host:port; empty means the SRV records of each account's domain.
	Server string `yaml:"server"`
	// TLS is starttls (default), direct, or plaintext (loopback test servers only).
	TLS                string `yaml:"tls"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 1s, 60s).
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// PingInterval is how often the server is pinged to notice a dead
	// connection (default 60s).
	PingInterval time.Duration `yaml:"ping_interval"`
	// ArchiveSweep is how often the archive is caught up on while
	// connected (default 5m), for messages the server archived but did not
	// deliver to the connector (carbons <private/> to another resource, or
	// carbons off).
	ArchiveSweep time.Duration `yaml:"archive_sweep"`
	// UploadAllow opens internal addresses (loopback, private, link-local...)
	// to file uploads: the upload slot URL comes from the server, and the
	// connector refuses to send files into its own network unless listed
	// here (CIDRs, addresses, host names, each optionally with a port).
	UploadAllow []string `yaml:"upload_allow"`
	// MaxStanzaSize is the largest stanza the connector takes from the
	// server, in bytes (default 1 MiB): one with more text is dropped, one
	// with more markup ends the stream (xmllimit.go).
	MaxStanzaSize int `yaml:"max_stanza_size"`

	// rootCAs, if set, replaces the system's roots in verifying the
	// server's certificate: tests trust their own server's certificate
	// with it rather than skip verification.
	rootCAs *x509.CertPool
}

// defaultArchiveSweep is the default of xmpp.archive_sweep: a message that
// only reached the archive arrives within minutes, for one small archive
// query per account (items bridged live in between are skipped as seen).
const defaultArchiveSweep = 5 * time.Minute

// sweepEvery is ArchiveSweep, or its default for a config that did not go
// through Check (tests and embedders build XMPPConfig in code).
func (c *XMPPConfig) sweepEvery() time.Duration {
	if c.ArchiveSweep <= 0 {
		return defaultArchiveSweep
	}
	return c.ArchiveSweep
}

// AvatarConfig enables the small HTTP endpoint contact avatars are served
// from: the protocol's avatar object carries a URL, and XMPP avatars are
// bytes inside a vCard, so somebody has to give them one.
type AvatarConfig struct {
	// Listen is host:port for the endpoint; empty disables avatars.
	Listen string `yaml:"listen"`
	// BaseURL is how the bridge reaches Listen (default http://<listen>).
	BaseURL string `yaml:"base_url"`
}

// AccountConfig is one XMPP account, bridged as one login.
type AccountConfig struct {
	JID          string `yaml:"jid"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	MatrixUser   string `yaml:"matrix_user"`
}

// LoadConfig reads and checks a config file, resolving *_file secrets.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	var cfg Config
	// A misspelt key would otherwise be dropped without a word, and its
	// setting silently take the default.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing config %s: %w", path, err)
	}
	if err := cfg.resolveSecrets(); err != nil {
		return nil, err
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.checkOperatorSettings(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &cfg, nil
}

// MinTokenLength is the shortest bridge token the bridge accepts (its
// config.MinSecretLength): a shorter one, such as the example's
// placeholder, would only be refused at the handshake, again and again.
const MinTokenLength = 32

// checkOperatorSettings checks what only a config file written by an
// operator gets wrong (tests and embedders build Config in code).
func (c *Config) checkOperatorSettings() error {
	if n := len(c.Bridge.Token); n < MinTokenLength {
		return fmt.Errorf("bridge.token is too short (%d characters): the bridge accepts only its own connector.token, "+
			"at least %d random characters (e.g. from `openssl rand -hex 32`)", n, MinTokenLength)
	}
	if c.LogLevel != "" {
		if _, err := zerolog.ParseLevel(c.LogLevel); err != nil {
			return fmt.Errorf("log_level %q is not one of trace, debug, info, warn, error, disabled", c.LogLevel)
		}
	}
	return nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func (c *Config) resolveSecrets() error {
	if c.Bridge.Token == "" && c.Bridge.TokenFile != "" {
		tok, err := readSecret(c.Bridge.TokenFile)
		if err != nil {
			return fmt.Errorf("bridge.token_file: %w", err)
		}
		c.Bridge.Token = tok
	}
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if a.Password == "" && a.PasswordFile != "" {
			pw, err := readSecret(a.PasswordFile)
			if err != nil {
				return fmt.Errorf("accounts[%d].password_file: %w", i, err)
			}
			a.Password = pw
		}
	}
	return nil
}

// Check fills in defaults and reports the first invalid setting.
func (c *Config) Check() error {
	if c.Bridge.URL == "" {
		return errors.New("bridge.url is required")
	}
	if c.Bridge.Token == "" {
		return errors.New("bridge.token or bridge.token_file is required")
	}
	if c.Bridge.ConnectorID == "" {
		c.Bridge.ConnectorID = "xmpp"
	}
	if c.Database == "" {
		c.Database = "xmpp-connector.db"
	}
	switch c.XMPP.TLS {
	case "":
		c.XMPP.TLS = TLSStartTLS
	case TLSStartTLS, TLSDirect, TLSPlaintext:
	default:
		return fmt.Errorf("xmpp.tls %q is not one of starttls, direct, plaintext", c.XMPP.TLS)
	}
	if c.XMPP.Server != "" {
		if _, _, err := net.SplitHostPort(c.XMPP.Server); err != nil {
			return fmt.Errorf("xmpp.server %q is not host:port: %w", c.XMPP.Server, err)
		}
	}
	for i, entry := range c.XMPP.UploadAllow {
		if err := netguard.ValidateEntry(entry); err != nil {
			return fmt.Errorf("xmpp.upload_allow[%d]: %w", i, err)
		}
	}
	switch {
	case c.XMPP.MaxStanzaSize == 0:
		c.XMPP.MaxStanzaSize = defaultMaxStanza
	case c.XMPP.MaxStanzaSize < minMaxStanza:
		return fmt.Errorf("xmpp.max_stanza_size %d is below %d bytes, the limit of a single tag", c.XMPP.MaxStanzaSize, minMaxStanza)
	}
	if c.XMPP.MinBackoff <= 0 {
		c.XMPP.MinBackoff = time.Second
	}
	if c.XMPP.MaxBackoff < c.XMPP.MinBackoff {
		c.XMPP.MaxBackoff = max(time.Minute, c.XMPP.MinBackoff)
	}
	if c.XMPP.PingInterval <= 0 {
		c.XMPP.PingInterval = time.Minute
	}
	if c.XMPP.ArchiveSweep <= 0 {
		c.XMPP.ArchiveSweep = defaultArchiveSweep
	}
	if c.Avatars.Listen != "" && c.Avatars.BaseURL == "" {
		c.Avatars.BaseURL = "http://" + c.Avatars.Listen
	}
	c.Avatars.BaseURL = strings.TrimRight(c.Avatars.BaseURL, "/")
	if len(c.Accounts) == 0 {
		return errors.New("accounts: at least one account is required")
	}
	seen := make(map[string]bool)
	for i := range c.Accounts {
		a := &c.Accounts[i]
		j, err := jid.Parse(a.JID)
		if err != nil || j.Localpart() == "" {
			return fmt.Errorf("accounts[%d].jid %q is not a user@domain JID", i, a.JID)
		}
		a.JID = j.Bare().String()
		if seen[a.JID] {
			return fmt.Errorf("accounts[%d].jid %s is listed twice", i, a.JID)
		}
		seen[a.JID] = true
		if a.Password == "" {
			return fmt.Errorf("accounts[%d] (%s): password or password_file is required", i, a.JID)
		}
		if !strings.HasPrefix(a.MatrixUser, "@") || !strings.Contains(a.MatrixUser, ":") {
			return fmt.Errorf("accounts[%d] (%s): matrix_user %q is not a Matrix user id", i, a.JID, a.MatrixUser)
		}
	}
	return nil
}
