package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Process is one child server: its exit is watched from the start, so a
// crash during startup is noticed instead of waited out.
type Process struct {
	name    string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

// Spawn starts cmd with both output streams appended to logPath, in its
// own process group and with deathSig (default SIGKILL) sent to it if this
// process dies first. Both streams go to one file because servers print
// startup errors and panics to whichever they like, before their logging
// is set up.
func Spawn(name string, cmd *exec.Cmd, logPath string, deathSig syscall.Signal) (*Process, error) {
	if deathSig == 0 {
		deathSig = syscall.SIGKILL
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = procAttr(nil, deathSig)
	}
	return spawn(name, cmd, logPath)
}

// spawn starts cmd, whose SysProcAttr the caller has set.
func spawn(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: opening log: %w", name, err)
	}
	// The child inherits the descriptor; ours is not needed after Start.
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed when the process has ended.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// ExitErr is how the process ended; valid once Exited is closed.
func (p *Process) ExitErr() error { return p.waitErr }

// Pid is the process id, for reports ("nothing left running").
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Stop asks the process to end with SIGTERM, so servers close their
// databases, and kills it if it has not ended when ctx does. It reports an
// exit that happened before it was asked as an error: a server has no
// business ending on its own.
func (p *Process) Stop(ctx context.Context) error {
	select {
	case <-p.exited:
		return fmt.Errorf("%s had already exited: %v", p.name, p.waitErr)
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		p.kill()
		return fmt.Errorf("%s did not stop in time and was killed", p.name)
	}
}

func (p *Process) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

var errExitedEarly = errors.New("exited during startup")

// errNotReady is WaitReady's error when the time ran out.
var errNotReady = errors.New("not ready")

// WaitReady polls ready until it returns nil, for at most timeout. It fails
// at once when the process ends (with an error that says so) or when
// hopeless, if not nil, returns an error: some servers stay up after
// logging that they will never be ready. An answer only counts if the
// process is still alive a moment later, since after a lost race for its
// port, what answers is somebody else's server.
func (p *Process) WaitReady(ctx context.Context, timeout time.Duration, ready, hopeless func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s %w", p.name, errExitedEarly)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if hopeless != nil {
			if err := hopeless(); err != nil {
				return err
			}
		}
		err := ready()
		if err == nil {
			select {
			case <-p.exited:
				return fmt.Errorf("%s %w", p.name, errExitedEarly)
			case <-time.After(20 * time.Millisecond):
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %w within %s (last error: %v)", p.name, errNotReady, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Listening is a WaitReady check: addr accepts TCP connections.
func Listening(addr string) func() error {
	return func() error {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	}
}

// BridgeEnv is the environment to run the bridge binary in: this process's
// without the DMBRIDGE_* variables, which override config keys (and which
// -g refuses to save tokens under).
func BridgeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DMBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}
