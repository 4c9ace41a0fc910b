package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/conformance"
)

type operatorConfig struct {
	login, chat, chatWith            string
	startCmd, restartCmd, produceCmd string
}

// operator is the Target for a connector the suite does not run itself:
// each action is a shell command if one was given, otherwise a request to
// the person at the terminal. Requests return at once; the suite then
// waits (up to -timeout) for the connector to do what was asked.
type operator struct {
	cfg     operatorConfig
	out     io.Writer
	proc    *exec.Cmd     // the -start-cmd process, while running
	exited  chan struct{} // closed when proc has exited
	started bool
}

var (
	_ conformance.Target    = (*operator)(nil)
	_ conformance.Restarter = (*operator)(nil)
)

func newOperator(cfg operatorConfig, out io.Writer) *operator {
	return &operator{cfg: cfg, out: out}
}

func (o *operator) Login() string         { return o.cfg.login }
func (o *operator) Chat() *connector.Chat { return o.cfg.chatObject() }

func (o *operator) Start(ctx context.Context, url, token string) error {
	first := !o.started
	o.started = true
	if o.cfg.startCmd != "" {
		return o.launch(url, token)
	}
	if first {
		o.say("Point the connector at %s with bearer token %s (the suite also sets DMBRIDGE_CONNECTOR_URL and DMBRIDGE_CONNECTOR_TOKEN for its commands), and start it now.", url, token)
		return nil
	}
	o.say("Start the connector again now.")
	return nil
}

func (o *operator) Stop(ctx context.Context) error {
	if o.proc != nil {
		return o.terminate(ctx)
	}
	o.say("Stop the connector now.")
	return nil
}

func (o *operator) Restart(ctx context.Context, url, token string) error {
	switch {
	case o.cfg.restartCmd != "":
		return o.shell(ctx, o.cfg.restartCmd, url, token, nil)
	case o.proc != nil:
		if err := o.terminate(ctx); err != nil {
			return err
		}
		return o.launch(url, token)
	}
	o.say("Restart the connector now: stop its process and start it again, keeping its database.")
	return nil
}

func (o *operator) Produce(ctx context.Context, n int) error {
	if o.cfg.produceCmd == "" {
		login := o.cfg.login
		if login == "" {
			login = "one of its logins"
		}
		o.say("Make the connector emit %d new event(s) now, for example by sending %d message(s) to %s from another account.", n, n, login)
		return nil
	}
	cmd := strings.ReplaceAll(o.cfg.produceCmd, "{n}", strconv.Itoa(n))
	return o.shell(ctx, cmd, "", "", []string{"N=" + strconv.Itoa(n)})
}

func (o *operator) say(format string, args ...any) {
	fmt.Fprintf(o.out, ">>> "+format+"\n", args...)
}

// shell runs a command to completion, its output going to ours.
func (o *operator) shell(ctx context.Context, command, url, token string, env []string) error {
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(append(os.Environ(), env...), connEnv(url, token)...)
	cmd.Stdout, cmd.Stderr = o.out, o.out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%q: %w", command, err)
	}
	return nil
}

// launch starts -start-cmd in the background, in its own process group so
// that stopping it reaches whatever the shell started.
func (o *operator) launch(url, token string) error {
	cmd := exec.Command("sh", "-c", o.cfg.startCmd)
	cmd.Env = append(os.Environ(), connEnv(url, token)...)
	cmd.Stdout, cmd.Stderr = o.out, o.out
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %q: %w", o.cfg.startCmd, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	o.proc, o.exited = cmd, exited
	return nil
}

// terminate asks the -start-cmd process to stop, then kills it if it has
// not exited after a grace period.
func (o *operator) terminate(ctx context.Context) error {
	proc, exited := o.proc.Process, o.exited
	o.proc, o.exited = nil, nil
	if err := interrupt(proc); err != nil {
		return fmt.Errorf("stop the connector: %w", err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	kill(proc)
	<-exited
	return nil
}

func connEnv(url, token string) []string {
	if url == "" {
		return nil
	}
	return []string{"DMBRIDGE_CONNECTOR_URL=" + url, "DMBRIDGE_CONNECTOR_TOKEN=" + token}
}
