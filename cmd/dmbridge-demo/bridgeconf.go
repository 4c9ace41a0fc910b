package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/devstack"
)

// configureBridge makes the bridge's config the way the README tells an
// operator to: `bridge -e`, a few keys adjusted, then `bridge -g` for the
// registration and tokens. The double puppet registration is made here, as
// the README's snippet shows.
func (d *demo) configureBridge(ctx context.Context) error {
	cfgPath, regPath := d.path("bridge", "config.yaml"), d.path("bridge", "registration.yaml")
	example, err := d.bridgeCmd(ctx, "-e").Output()
	if err != nil {
		return fmt.Errorf("%s -e: %w", d.binary("bridge"), err)
	}
	if err := os.WriteFile(cfgPath, example, 0o600); err != nil {
		return err
	}
	dp := devstack.DoublePuppetRegistration(devstack.DendriteDomain)
	if err := dp.Save(d.path("bridge", "doublepuppet.yaml")); err != nil {
		return fmt.Errorf("writing the double puppet registration: %w", err)
	}
	err = editYAML(cfgPath, map[string]any{
		"homeserver.address":    fmt.Sprintf("http://127.0.0.1:%d", d.ports.dendrite),
		"appservice.address":    fmt.Sprintf("http://127.0.0.1:%d", d.ports.appservice),
		"appservice.port":       d.ports.appservice,
		"database.uri":          "file:" + d.path("bridge", "dmbridge.db") + "?_txlock=immediate",
		"connector.listen":      fmt.Sprintf("127.0.0.1:%d", d.ports.connector),
		"connector.token":       d.secrets.connectorToken,
		"double_puppet.secrets": map[string]string{devstack.DendriteDomain: "as_token:" + dp.AppToken},
		// Dendrite pushes no redactions, typing or receipts: follow alice's
		// /sync for them.
		"double_puppet.sync": true,
		// Prosody's file service and the connector's avatar server run on
		// loopback here, which the bridge refuses to fetch from by default.
		"bridge.media_fetch_allow": []string{"127.0.0.1/32"},
		// A file is easier to follow than colour codes in it.
		"logging.format": "json",
	})
	if err != nil {
		return err
	}
	if out, err := d.bridgeCmd(ctx, "-g", "-c", cfgPath, "-r", regPath).CombinedOutput(); err != nil {
		return fmt.Errorf("%s -g: %w\n%s", d.binary("bridge"), err, out)
	}
	cfg, _, err := config.Load(cfgPath)
	if err != nil {
		return fmt.Errorf("the generated config does not load: %w", err)
	}
	d.bridgeCfg = cfg
	return nil
}

func (d *demo) binary(name string) string { return filepath.Join(d.opts.binDir, name) }

// bridgeCmd runs the bridge binary without the caller's DMBRIDGE_*
// variables: they override config keys, and -g refuses to save tokens
// that the environment would override.
func (d *demo) bridgeCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.binary("bridge"), args...)
	cmd.Env = devstack.BridgeEnv()
	cmd.Dir = d.path("bridge")
	return cmd
}
