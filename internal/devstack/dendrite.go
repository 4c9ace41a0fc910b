package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"
)

// DendriteDomain is the server name of every homeserver devstack runs.
const DendriteDomain = "localhost"

const dendriteStartTimeout = 60 * time.Second

// DendriteOptions describe one homeserver instance.
type DendriteOptions struct {
	// Dir holds the config, keys, databases, media and log. It is created
	// if missing; an existing one is reused (its databases too).
	Dir string
	// Port to listen on (127.0.0.1). 0 picks a free one, and picks again
	// if another process takes it first.
	Port int
	// Registrations are appservice registration files to load. Their URLs
	// must already point where the appservices will listen.
	Registrations []string
	// SharedSecret allows registering users (RegisterUser); empty makes
	// a random one.
	SharedSecret string
	// LogLevel defaults to $DMBRIDGE_DENDRITE_LOG_LEVEL, else info.
	LogLevel string
	// DeathSignal reaches Dendrite if this process dies without stopping
	// it; default SIGKILL.
	DeathSignal syscall.Signal
	// Binaries to run; the zero value means EnsureDendrite.
	Binaries DendriteBinaries
}

// Dendrite is a running homeserver.
type Dendrite struct {
	URL          string // http://127.0.0.1:port
	Domain       string
	Dir          string
	LogPath      string
	SharedSecret string
	proc         *Process
}

// StartDendrite writes a config for opts, starts Dendrite and waits until
// it answers. Stop it with Stop.
func StartDendrite(ctx context.Context, opts DendriteOptions) (*Dendrite, error) {
	bins := opts.Binaries
	if bins.Dendrite == "" {
		var err error
		if bins, err = EnsureDendrite(ctx, nil); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("dendrite directory: %w", err)
	}
	d := &Dendrite{
		Domain:       DendriteDomain,
		Dir:          opts.Dir,
		LogPath:      filepath.Join(opts.Dir, "dendrite.log"),
		SharedSecret: opts.SharedSecret,
	}
	if d.SharedSecret == "" {
		d.SharedSecret = RandomHex(16)
	}
	keyPath := filepath.Join(opts.Dir, "matrix_key.pem")
	if _, err := os.Stat(keyPath); errors.Is(err, os.ErrNotExist) {
		if out, err := exec.CommandContext(ctx, bins.GenerateKeys, "--private-key", keyPath).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("generate-keys: %w\n%s", err, out)
		}
	}
	logLevel := opts.LogLevel
	if logLevel == "" {
		logLevel = os.Getenv("DMBRIDGE_DENDRITE_LOG_LEVEL")
	}
	if logLevel == "" {
		logLevel = "info"
	}
	cfg, err := yaml.Marshal(dendriteConfig(opts.Dir, keyPath, d.SharedSecret, logLevel, opts.Registrations))
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(opts.Dir, "dendrite.yaml")
	// The file holds the registration shared secret.
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	deathSig := opts.DeathSignal
	if deathSig == 0 {
		deathSig = syscall.SIGKILL
	}

	// Another process can grab a free port before Dendrite binds it;
	// Dendrite then exits at once, and a new port makes that harmless.
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		lastErr = d.launch(ctx, bins.Dendrite, cfgPath, port, deathSig)
		if lastErr == nil {
			return d, nil
		}
		if !errors.Is(lastErr, errExitedEarly) || !strings.Contains(d.LogTail(5), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("starting dendrite: %w\n--- last lines of %s ---\n%s", lastErr, d.LogPath, d.LogTail(40))
}

func (d *Dendrite) launch(ctx context.Context, binary, cfgPath string, port int, deathSig syscall.Signal) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(binary, "--config", cfgPath, "--http-bind-address", addr)
	cmd.Dir = d.Dir
	cmd.SysProcAttr = procAttr(nil, deathSig)
	p, err := spawn("dendrite", cmd, d.LogPath)
	if err != nil {
		return err
	}
	d.proc, d.URL = p, "http://"+addr
	if err := p.WaitReady(ctx, dendriteStartTimeout, answers200(d.URL+"/_matrix/client/versions"), nil); err != nil {
		if !errors.Is(err, errExitedEarly) {
			p.kill()
		}
		return err
	}
	return nil
}

// answers200 is a WaitReady check: url answers 200.
func answers200(url string) func() error {
	client := &http.Client{Timeout: 2 * time.Second}
	return func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		return nil
	}
}

// Stop ends Dendrite with SIGTERM (it closes its databases), killing it
// if ctx ends first. An earlier exit of its own is reported as an error.
func (d *Dendrite) Stop(ctx context.Context) error { return d.proc.Stop(ctx) }

// Exited is closed when Dendrite has ended.
func (d *Dendrite) Exited() <-chan struct{} { return d.proc.Exited() }

// ExitErr is how Dendrite ended; valid once Exited is closed.
func (d *Dendrite) ExitErr() error { return d.proc.ExitErr() }

// Pid is Dendrite's process id.
func (d *Dendrite) Pid() int { return d.proc.Pid() }

// LogTail returns the last n lines Dendrite has logged.
func (d *Dendrite) LogTail(n int) string { return Tail(d.LogPath, n) }

// dendriteConfig is the whole config file; everything Dendrite would
// otherwise default to a relative path is pointed into dir so instances
// share nothing.
func dendriteConfig(dir, keyPath, secret, logLevel string, registrations []string) map[string]any {
	sqlite := func(name string) map[string]any {
		// Dendrite has no global SQLite option: with SQLite every component
		// needs its own database section.
		return map[string]any{"connection_string": "file:" + filepath.Join(dir, name+".db")}
	}
	if registrations == nil {
		registrations = []string{}
	}
	return map[string]any{
		"version": 2,
		"global": map[string]any{
			"server_name":                    DendriteDomain,
			"private_key":                    keyPath,
			"disable_federation":             true,
			"trusted_third_party_id_servers": []string{},
			"report_stats":                   map[string]any{"enabled": false},
			// Without enable_outbound Dendrite accepts PUT /presence and
			// silently drops it, so bridged presence could not be observed.
			"presence": map[string]any{"enable_inbound": true, "enable_outbound": true},
			"jetstream": map[string]any{
				"in_memory":    true,
				"storage_path": filepath.Join(dir, "jetstream"),
			},
			// The default (1gb) sizes ristretto's counters for a real
			// server: tens of MB per instance for no benefit here.
			"cache": map[string]any{"max_size_estimated": "32mb", "max_age": "1h"},
		},
		"app_service_api": map[string]any{
			"config_files": registrations,
		},
		"client_api": map[string]any{
			"registration_disabled":      true,
			"guests_disabled":            true,
			"registration_shared_secret": secret,
			"rate_limiting":              map[string]any{"enabled": false},
		},
		"federation_api": map[string]any{
			"database": sqlite("federationapi"),
			// Never reach out to matrix.org from a local stack.
			"key_perspectives": []any{},
		},
		"key_server":  map[string]any{"database": sqlite("keyserver")},
		"media_api":   map[string]any{"database": sqlite("mediaapi"), "base_path": filepath.Join(dir, "media")},
		"mscs":        map[string]any{"database": sqlite("mscs")},
		"relay_api":   map[string]any{"database": sqlite("relayapi")},
		"room_server": map[string]any{"database": sqlite("roomserver")},
		"sync_api":    map[string]any{"database": sqlite("syncapi")},
		"user_api": map[string]any{
			"account_database": sqlite("userapi_accounts"),
			// Minimum bcrypt cost: registration and login are otherwise the
			// slowest requests a test makes.
			"bcrypt_cost": 4,
		},
		"logging": []any{map[string]any{"type": "std", "level": logLevel}},
	}
}
