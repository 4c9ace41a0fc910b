package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const prosodyStartTimeout = 30 * time.Second

// ProsodyOptions describe one XMPP server instance.
type ProsodyOptions struct {
	// Dir holds the config, data and logs; created if missing. Prosody
	// must be able to reach it (see ProsodyCanReach).
	Dir string
	// Port for client connections on 127.0.0.1. 0 picks a free one, and
	// picks again if another process takes it first.
	Port int
	// NoOffline disables offline message storage (mod_offline), so the
	// archive is the only way an account that was away gets its messages.
	NoOffline bool
	// NoArchive leaves the message archive (mod_mam, XEP-0313) out, like
	// a server without one: offline storage is then the only way an
	// account that was away gets its messages.
	NoArchive bool
	// UploadLimit is the largest file HTTP File Upload accepts, in bytes;
	// 0 means DefaultUploadLimit.
	UploadLimit int64
	// NoUpload leaves HTTP File Upload out, like a server without it.
	NoUpload bool
	// TLSCert and TLSKey are PEM files (under Dir, so that they are
	// handed to Prosody's account) of the certificate Prosody offers with
	// STARTTLS, which it then requires of every client. Empty: no TLS.
	TLSCert, TLSKey string
	// DeathSignal reaches Prosody if this process dies without stopping
	// it; default SIGKILL.
	DeathSignal syscall.Signal
}

// Prosody is a Prosody server that can be stopped and started again on
// the same port with the same data.
type Prosody struct {
	Dir  string
	Port int
	// HTTPPort serves HTTP File Upload on 127.0.0.1; picked freshly at each
	// StartProsody.
	HTTPPort int
	cfgPath  string
	logPath  string
	outPath  string // Prosody's own stdout/stderr: startup errors, Lua tracebacks
	cred     *procCred
	deathSig syscall.Signal

	mu   sync.Mutex
	proc *Process // nil while stopped
}

var errNoListener = errors.New("prosody did not open its port")

// StartProsody writes a config for opts and starts Prosody, returning once
// it accepts connections.
func StartProsody(ctx context.Context, opts ProsodyOptions) (*Prosody, error) {
	if _, err := exec.LookPath("prosody"); err != nil {
		return nil, fmt.Errorf("prosody is not installed (scripts/prerequisites.sh installs it): %w", err)
	}
	cred, err := prosodyAccount()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, err
	}
	if cred != nil && !ProsodyCanReach(opts.Dir) {
		return nil, fmt.Errorf("prosody runs as the prosody account, which cannot reach %s (a parent directory is private); use a directory under %s", opts.Dir, os.TempDir())
	}
	s := &Prosody{
		Dir:      opts.Dir,
		cfgPath:  filepath.Join(opts.Dir, "prosody.cfg.lua"),
		logPath:  filepath.Join(opts.Dir, "prosody.log"),
		outPath:  filepath.Join(opts.Dir, "prosody.out"),
		cred:     cred,
		deathSig: opts.DeathSignal,
	}
	if s.deathSig == 0 {
		s.deathSig = syscall.SIGKILL
	}
	for _, sub := range []string{"data", "certs"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, sub), 0o750); err != nil {
			return nil, err
		}
	}
	attempts := 1
	if opts.Port == 0 {
		attempts = 3
	}
	var lastErr error
	for range attempts {
		s.Port = opts.Port
		if s.Port == 0 {
			if s.Port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		// Only the client port is waited for; a lost race for the HTTP
		// port is rare (it was free a moment ago) and shows in the log.
		// FreePort never hands out the client port again.
		if s.HTTPPort, err = FreePort(); err != nil {
			return nil, err
		}
		limit := opts.UploadLimit
		if limit <= 0 {
			limit = DefaultUploadLimit
		}
		if opts.NoUpload {
			limit = 0
		}
		if err := os.WriteFile(s.cfgPath, []byte(prosodyConfig(opts, s.Port, s.HTTPPort, limit)), 0o640); err != nil {
			return nil, err
		}
		if err := handOver(opts.Dir, cred); err != nil {
			return nil, fmt.Errorf("giving %s to the prosody account: %w", opts.Dir, err)
		}
		if lastErr = s.launch(ctx); lastErr == nil {
			return s, nil
		}
		if !errors.Is(lastErr, errNoListener) {
			break
		}
	}
	return nil, fmt.Errorf("starting prosody: %w\n%s", lastErr, s.Logs(40))
}

// Addr is the host:port of the client-to-server listener.
func (s *Prosody) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// JID returns the bare JID of a local user.
func (s *Prosody) JID(user string) string { return user + "@" + ProsodyDomain }

// Register creates an account with prosodyctl. It works while the server
// runs: the internal storage reads accounts from disk at each login.
func (s *Prosody) Register(ctx context.Context, user, password string) error {
	cmd := exec.CommandContext(ctx, "prosodyctl", "--config", s.cfgPath, "register", user, ProsodyDomain, password)
	cmd.Dir = s.Dir
	cmd.SysProcAttr = procAttr(s.cred, syscall.SIGKILL)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("registering %s: %w\n%s", user, err, out)
	}
	return nil
}

// Stop stops Prosody (SIGTERM, then SIGKILL when ctx ends). Stopping a
// stopped server does nothing; a server that had exited on its own is
// reported as an error.
func (s *Prosody) Stop(ctx context.Context) error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(ctx)
}

// Start starts a stopped server again on the same port with the same
// data, the way an administrator's restart looks to connected clients.
func (s *Prosody) Start(ctx context.Context) error {
	s.mu.Lock()
	running := s.proc != nil
	s.mu.Unlock()
	if running {
		return errors.New("prosody is already running")
	}
	return s.launch(ctx)
}

// Exited is closed when the current Prosody process ends (nil when stopped).
func (s *Prosody) Exited() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	return s.proc.Exited()
}

// Pid is the current Prosody process id, 0 when stopped.
func (s *Prosody) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Logs returns Prosody's own output and the end of its log, for failure
// reports.
func (s *Prosody) Logs(n int) string {
	return fmt.Sprintf("--- prosody output ---\n%s\n--- last %d lines of prosody.log ---\n%s", Tail(s.outPath, 20), n, Tail(s.logPath, n))
}

// LogContains reports whether Prosody's log holds sub: how a test sees
// what the server made of a client's stream (its log is the only place
// that says).
func (s *Prosody) LogContains(sub string) bool {
	data, err := os.ReadFile(s.logPath)
	return err == nil && strings.Contains(string(data), sub)
}

func (s *Prosody) launch(ctx context.Context) error {
	var logStart int64
	if fi, err := os.Stat(s.logPath); err == nil {
		logStart = fi.Size()
	}
	cmd := exec.Command("prosody", "--config", s.cfgPath, "-F")
	cmd.Dir = s.Dir
	cmd.SysProcAttr = procAttr(s.cred, s.deathSig)
	p, err := spawn("prosody", cmd, s.outPath)
	if err != nil {
		return err
	}
	if err := p.WaitReady(ctx, prosodyStartTimeout, Listening(s.Addr()), cannotBind(s.logPath, logStart)); err != nil {
		if !errors.Is(err, errExitedEarly) {
			p.kill()
		}
		if errors.Is(err, errNotReady) {
			// Not listening in time is retried on another port, like a
			// logged bind failure.
			err = fmt.Errorf("%w: %w", errNoListener, err)
		}
		return err
	}
	s.mu.Lock()
	s.proc = p
	s.mu.Unlock()
	return nil
}

// cannotBind is a WaitReady check for Prosody, which keeps running when it
// cannot bind: the log is the only quick way to learn that the port was
// taken. logStart is where this run's part of the log begins.
func cannotBind(logPath string, logStart int64) func() error {
	return func() error {
		if data, _ := os.ReadFile(logPath); int64(len(data)) > logStart && strings.Contains(string(data[logStart:]), "Failed to open server port") {
			return errNoListener
		}
		return nil
	}
}
