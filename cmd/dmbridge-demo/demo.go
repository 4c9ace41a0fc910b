package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/devstack"
)

// stopGrace is how long each process gets to stop cleanly before it is
// killed.
const stopGrace = 20 * time.Second

// marker marks a directory as demo state, so that emptying it at start can
// never remove something else a mistyped -state pointed at.
const marker = ".dmbridge-demo"

// demo is one run: the servers it started and what the user needs to know.
type demo struct {
	opts *options
	out  io.Writer
	log  zerolog.Logger

	ports      ports
	bridgeCfg  *config.Config
	secrets    secrets
	prosodyDir string // outside the state directory when Prosody cannot reach it

	hs        *devstack.Dendrite
	xmpp      *devstack.Prosody
	bridge    *devstack.Process
	connector *devstack.Process
}

// secrets are the generated passwords and tokens; only the passwords the
// user logs in with are ever printed.
type secrets struct {
	aliceMatrix    string
	aliceXMPP      string
	bobXMPP        string
	connectorToken string
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) path(parts ...string) string {
	return filepath.Join(append([]string{d.opts.stateDir}, parts...)...)
}

// run brings the stack up, proves the DM, and then either waits for
// Ctrl-C or stops at once; everything started is stopped before it
// returns. The result is the exit code.
func (d *demo) run(ctx context.Context) int {
	began := time.Now()
	d.say("dmbridge demo: Dendrite, Prosody, the bridge and the XMPP connector, on loopback with SQLite.")
	d.say("State: %s (emptied now, kept after exit).", d.opts.stateDir)
	defer d.stopAll()
	if err := d.up(ctx); err != nil {
		return d.fail(ctx, "starting the stack", err)
	}
	d.say("Stack up in %s.\n", time.Since(began).Round(100*time.Millisecond))
	p, err := d.prove(ctx)
	if err != nil {
		return d.fail(ctx, "proving the DM", err)
	}
	d.printProof(p)
	d.printGuide()
	if d.opts.exitAfterProof {
		d.say("Exiting after the proof (exit-after-proof mode).")
		return 0
	}
	d.say("Press Ctrl-C to stop everything.")
	if err := d.watch(ctx); err != nil {
		return d.fail(ctx, "running", err)
	}
	d.say("\nCtrl-C: stopping the connector, the bridge, Dendrite and Prosody...")
	return 0
}

func (d *demo) fail(ctx context.Context, what string, err error) int {
	if ctx.Err() != nil {
		d.say("\nInterrupted while %s; stopping.", what)
		return 130
	}
	d.log.Error().Err(err).Msgf("Demo failed while %s", what)
	d.say("\nThe demo failed while %s. %s.", what, d.logPlaces())
	return 1
}

// logPlaces says where each process of the demo logs: the bridge and the
// connector under logs/, the homeserver and the XMPP server in their own
// directories (Prosody's may be a temporary one, see startProsody).
func (d *demo) logPlaces() string {
	s := "Logs: the bridge's and the connector's in " + d.path("logs") +
		", Dendrite's in " + d.path("dendrite", "dendrite.log")
	if d.prosodyDir != "" {
		s += ", Prosody's in " + filepath.Join(d.prosodyDir, "prosody.log")
	}
	return s
}

// up starts everything in dependency order: the bridge config (its
// registration has to exist before Dendrite starts), Dendrite, Prosody,
// the bridge, the connector.
func (d *demo) up(ctx context.Context) error {
	if err := d.resetState(); err != nil {
		return err
	}
	if err := d.pickPorts(); err != nil {
		return err
	}
	d.secrets = secrets{
		aliceMatrix:    devstack.RandomHex(6),
		aliceXMPP:      devstack.RandomHex(6),
		bobXMPP:        devstack.RandomHex(6),
		connectorToken: devstack.RandomHex(32),
	}
	if err := d.configureBridge(ctx); err != nil {
		return fmt.Errorf("bridge config: %w", err)
	}
	if err := d.startDendrite(ctx); err != nil {
		return err
	}
	if err := d.startProsody(ctx); err != nil {
		return err
	}
	if err := d.startBridge(ctx); err != nil {
		return err
	}
	return d.startConnector(ctx)
}

// resetState empties the state directory: every run starts from nothing,
// so what it shows does not depend on an earlier run.
func (d *demo) resetState() error {
	dir := d.opts.stateDir
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
			return fmt.Errorf("%s is not empty and not a demo state directory (no %s); not removing it", dir, marker)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("removing the previous run's state: %w", err)
		}
	}
	for _, sub := range []string{"logs", "bridge", "xmpp-connector"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, marker), []byte("state of dmbridge-demo; emptied on its next run\n"), 0o644)
}

// watch waits for Ctrl-C, or for a process that dies on its own.
func (d *demo) watch(ctx context.Context) error {
	died := make(chan string, 4)
	for name, exited := range map[string]<-chan struct{}{
		"dendrite": d.hs.Exited(), "prosody": d.xmpp.Exited(),
		"bridge": d.bridge.Exited(), "xmpp-connector": d.connector.Exited(),
	} {
		go func() {
			select {
			case <-exited:
				died <- name
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case name := <-died:
		return fmt.Errorf("%s exited on its own. %s", name, d.logPlaces())
	}
}

// stopAll stops what was started, clients' side first, so that nothing
// is left running and every database is closed cleanly.
func (d *demo) stopAll() {
	type stopper struct {
		name string
		pid  int
		stop func(context.Context) error
	}
	var all []stopper
	if d.connector != nil {
		all = append(all, stopper{"xmpp-connector", d.connector.Pid(), d.connector.Stop})
	}
	if d.bridge != nil {
		all = append(all, stopper{"bridge", d.bridge.Pid(), d.bridge.Stop})
	}
	if d.hs != nil {
		all = append(all, stopper{"dendrite", d.hs.Pid(), d.hs.Stop})
	}
	if d.xmpp != nil {
		all = append(all, stopper{"prosody", d.xmpp.Pid(), d.xmpp.Stop})
	}
	if len(all) == 0 {
		return
	}
	clean := true
	for _, s := range all {
		ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		if err := s.stop(ctx); err != nil {
			clean = false
			d.log.Warn().Err(err).Str("process", s.name).Msg("Unclean stop")
		}
		cancel()
		d.say("  stopped %-15s (pid %d)", s.name, s.pid)
	}
	if d.prosodyDir != "" && d.prosodyDir != d.path("prosody") {
		_ = os.RemoveAll(d.prosodyDir)
	}
	if clean {
		d.say("All stopped; nothing left running. State and logs stay in %s until the next run.", d.opts.stateDir)
	} else {
		d.say("Stopped, some uncleanly (see above); nothing left running.")
	}
}
