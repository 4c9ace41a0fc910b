// Package testxmpp runs a real XMPP server (Prosody) for tests, and a small
// XMPP client for playing the remote party ("bob") in them.
//
// Every Start gets its own Prosody process, data directory and loopback
// port, so tests can run in parallel and never see each other's accounts
// or archives. Prosody is not installed here: the project's setup script
// installs the Debian package (apt-get install -y prosody).
package testxmpp

import (
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
	"testing"
	"time"
)

// Domain is the only virtual host of every test server.
const Domain = "localhost"

const (
	startTimeout = 30 * time.Second
	stopGrace    = 5 * time.Second
	// Enough of the debug log to see the last few stanzas around a failure.
	failureLogLines = 150
)

// Server is a running Prosody owned by one test.
type Server struct {
	dir     string
	cfgPath string
	logPath string
	outPath string // Prosody's own stdout/stderr: startup errors, Lua tracebacks
	port    int
	cred    *procCred

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

// Start launches a fresh Prosody on 127.0.0.1 with host Domain. It is
// stopped when the test finishes; if the test failed, the end of its log is
// written to the test log.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	began := time.Now()
	if _, err := exec.LookPath("prosody"); err != nil {
		t.Fatalf("testxmpp: prosody is not installed (apt-get install -y prosody): %v", err)
	}
	cred, err := runAs()
	if err != nil {
		t.Fatalf("testxmpp: %v", err)
	}
	// Not t.TempDir: its parents are private to the test's user, and Prosody
	// may run as another one.
	dir, err := os.MkdirTemp("", "testxmpp-")
	if err != nil {
		t.Fatalf("testxmpp: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &Server{
		dir:     dir,
		cfgPath: filepath.Join(dir, "prosody.cfg.lua"),
		logPath: filepath.Join(dir, "prosody.log"),
		outPath: filepath.Join(dir, "prosody.out"),
		cred:    cred,
	}
	for _, sub := range []string{"data", "certs"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o750); err != nil {
			t.Fatalf("testxmpp: %v", err)
		}
	}

	// Another process can take the port between freePort and Prosody's
	// bind; Prosody then runs without a listener, so retry with a new port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("testxmpp: %v", err)
		}
		if err := os.WriteFile(s.cfgPath, []byte(prosodyConfig(dir, s.port, o)), 0o640); err != nil {
			t.Fatalf("testxmpp: %v", err)
		}
		if err := handOver(dir, cred); err != nil {
			t.Fatalf("testxmpp: giving %s to the prosody account: %v", dir, err)
		}
		if lastErr = s.launch(); lastErr == nil {
			t.Cleanup(func() { s.cleanup(t) })
			t.Logf("testxmpp: prosody up at %s in %s (data in %s)", s.Addr(), time.Since(began).Round(time.Millisecond), dir)
			return s
		}
	}
	t.Fatalf("testxmpp: starting prosody: %v\n%s", lastErr, s.logs(failureLogLines))
	return nil
}

// Addr is the host:port of the client-to-server listener.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Domain is the server's XMPP domain.
func (s *Server) Domain() string { return Domain }

// JID returns the bare JID of a local user.
func (s *Server) JID(user string) string { return user + "@" + Domain }

// Register creates an account with prosodyctl. It works while the server
// runs: the internal storage reads accounts from disk at each login.
func (s *Server) Register(t testing.TB, user, password string) {
	t.Helper()
	cmd := exec.Command("prosodyctl", "--config", s.cfgPath, "register", user, Domain, password)
	cmd.Dir = s.dir
	cmd.SysProcAttr = procAttr(s.cred)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testxmpp: registering %s: %v\n%s", user, err, out)
	}
}

// Restart stops Prosody and starts it again on the same port with the same
// data, the way an administrator's restart looks to connected clients.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	if err := s.launch(); err != nil {
		t.Fatalf("testxmpp: restarting prosody: %v\n%s", err, s.logs(failureLogLines))
	}
}

// Stop stops Prosody (for tests of a server that is down); Restart or the
// test's end bring it back or clean it up.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		t.Fatalf("testxmpp: prosody exited on its own: %v\n%s", s.waitErr, s.logs(failureLogLines))
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopGrace):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// LogTail returns the last n lines of Prosody's log.
func (s *Server) LogTail(n int) string { return tail(s.logPath, n) }

var errNoListener = errors.New("prosody did not open its port")

func (s *Server) launch() error {
	out, err := os.OpenFile(s.outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The child inherits the descriptor; our copy is not needed after Start.
	defer out.Close()
	var logStart int64
	if fi, err := os.Stat(s.logPath); err == nil {
		logStart = fi.Size()
	}
	cmd := exec.Command("prosody", "--config", s.cfgPath, "-F")
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = procAttr(s.cred)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("prosody: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	if err := waitListening(s.Addr(), s.logPath, logStart, exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return err
	}
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return nil
}

// waitListening waits for addr to accept connections; logStart is where
// this run's part of the log begins.
func waitListening(addr, logPath string, logStart int64, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("prosody exited during startup")
		default:
		}
		// Prosody keeps running when it cannot bind, so the log is the
		// only quick way to learn that the port was taken.
		if data, _ := os.ReadFile(logPath); int64(len(data)) > logStart && strings.Contains(string(data[logStart:]), "Failed to open server port") {
			return errNoListener
		}
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			// A listener that is not ours (lost port race) answers too;
			// ours is only certain if our process is still alive.
			select {
			case <-exited:
				return errors.New("prosody exited during startup")
			case <-time.After(20 * time.Millisecond):
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w %s within %s (last error: %v)", errNoListener, addr, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) cleanup(t testing.TB) {
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.Stop(t)
	}
	if t.Failed() {
		t.Logf("testxmpp: prosody (%s):\n%s", s.Addr(), s.logs(failureLogLines))
	}
}

func (s *Server) logs(n int) string {
	return fmt.Sprintf("--- prosody output ---\n%s\n--- last %d lines of prosody.log ---\n%s", tail(s.outPath, 20), n, tail(s.logPath, n))
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
