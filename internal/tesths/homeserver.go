// Package tesths runs a real Matrix homeserver (Dendrite) for end-to-end
// tests, plus a few helpers for observing it from a test.
//
// Each Start gets its own Dendrite process, data directory and port, so
// tests can run in parallel and never see each other's users or rooms. The
// Dendrite binary is built from the pinned tools module on first use and
// cached across runs (see CacheDir).
package tesths

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
)

// Domain is the server name of every test homeserver.
const Domain = "localhost"

const (
	startTimeout = 60 * time.Second
	stopGrace    = 5 * time.Second
	// Enough log for the usual "why did the request fail" question without
	// drowning the test output.
	failureLogLines = 100
)

// Homeserver is a running Dendrite instance owned by one test.
type Homeserver struct {
	URL    string // http://127.0.0.1:port
	Domain string // "localhost"

	dir     string
	logPath string
	secret  string // registration_shared_secret
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

// Start builds Dendrite if needed and starts a fresh instance whose config
// lists the given appservice registrations. The registrations are written
// as-is, so their URLs must already point at wherever the appservice will
// listen (see FreePort). The server is stopped when the test finishes, and
// if the test failed the end of its log is written to the test log.
func Start(t testing.TB, regs ...*appservice.Registration) *Homeserver {
	t.Helper()
	began := time.Now()
	bins, err := ensureBinaries()
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Logf("tesths: built dendrite in %s", d.Round(time.Second))
	}

	dir := t.TempDir()
	hs := &Homeserver{
		Domain:  Domain,
		dir:     dir,
		logPath: filepath.Join(dir, "dendrite.log"),
		secret:  randomHex(16),
	}
	keyPath := filepath.Join(hs.dir, "matrix_key.pem")
	if out, err := exec.Command(bins.generateKeys, "--private-key", keyPath).CombinedOutput(); err != nil {
		t.Fatalf("tesths: generate-keys: %v\n%s", err, out)
	}
	regPaths := make([]string, len(regs))
	for i, reg := range regs {
		regPaths[i] = filepath.Join(hs.dir, fmt.Sprintf("appservice-%d.yaml", i))
		if err := reg.Save(regPaths[i]); err != nil {
			t.Fatalf("tesths: writing registration %q: %v", reg.ID, err)
		}
	}
	cfgPath := filepath.Join(hs.dir, "dendrite.yaml")
	cfg, err := yaml.Marshal(dendriteConfig(hs.dir, keyPath, hs.secret, regPaths))
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatalf("tesths: %v", err)
	}

	// Another process can grab the port between FreePort and Dendrite's
	// bind; Dendrite then exits at once, so a couple of retries with a new
	// port make that race harmless.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		err := hs.launch(bins.dendrite, cfgPath, port)
		if err == nil {
			t.Cleanup(func() { hs.stop(t) })
			t.Logf("tesths: dendrite up at %s in %s (data in %s)", hs.URL, time.Since(began).Round(time.Millisecond), hs.dir)
			return hs
		}
		lastErr = err
		if !errors.Is(err, errExitedEarly) || !strings.Contains(hs.LogTail(5), "address already in use") {
			break
		}
	}
	t.Fatalf("tesths: starting dendrite: %v\n--- dendrite log ---\n%s", lastErr, hs.LogTail(failureLogLines))
	return nil
}

var errExitedEarly = errors.New("dendrite exited during startup")

func (hs *Homeserver) launch(binary, cfgPath string, port int) error {
	logFile, err := os.OpenFile(hs.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The child inherits the descriptor; our copy is not needed after Start.
	defer logFile.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(binary, "--config", cfgPath, "--http-bind-address", addr)
	cmd.Dir = hs.dir
	// Both streams go to one file: logrus output, and also anything printed
	// before logging is configured (config errors) or by a panic.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		hs.waitErr = cmd.Wait()
		close(exited)
	}()
	hs.cmd, hs.exited, hs.URL = cmd, exited, "http://"+addr

	err = waitReady(hs.URL, exited)
	if errors.Is(err, errExitedEarly) {
		<-exited
		return fmt.Errorf("%w (%v)", err, hs.waitErr)
	} else if err != nil {
		hs.kill()
	}
	return err
}

func waitReady(baseURL string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errExitedEarly
		default:
		}
		resp, err := client.Get(baseURL + "/_matrix/client/versions")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// If our process died on a bind error, whatever answered is
				// somebody else's server on the same port.
				select {
				case <-exited:
					return errExitedEarly
				case <-time.After(20 * time.Millisecond):
					return nil
				}
			}
		}
		if err == nil {
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s/_matrix/client/versions within %s (last error: %v)", baseURL, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (hs *Homeserver) stop(t testing.TB) {
	select {
	case <-hs.exited:
		// Dendrite has no business exiting on its own while a test uses it.
		t.Errorf("tesths: dendrite exited before the end of the test: %v", hs.waitErr)
	default:
		// SIGTERM lets Dendrite close its SQLite files; the data is thrown
		// away anyway, so a slow shutdown only gets a few seconds.
		_ = hs.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-hs.exited:
		case <-time.After(stopGrace):
			hs.kill()
		}
	}
	if t.Failed() {
		t.Logf("tesths: last %d lines of %s:\n%s", failureLogLines, hs.logPath, hs.LogTail(failureLogLines))
	}
}

func (hs *Homeserver) kill() {
	_ = hs.cmd.Process.Kill()
	<-hs.exited
}

// LogTail returns the last n lines Dendrite has logged.
func (hs *Homeserver) LogTail(n int) string {
	data, err := os.ReadFile(hs.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// UserID is the full Matrix ID of a local user.
func (hs *Homeserver) UserID(localpart string) id.UserID {
	return id.NewUserID(localpart, hs.Domain)
}

// Password is the password CreateUser gives an account, for tests that
// need to log in again (for example to get a second device).
func (hs *Homeserver) Password(localpart string) string {
	return localpart + "-test-password"
}

// CreateUser registers a real (non-appservice) user through the
// shared-secret admin API and returns a client logged in as that user.
func (hs *Homeserver) CreateUser(t testing.TB, localpart string) *mautrix.Client {
	t.Helper()
	ctx := t.Context()
	anon, err := mautrix.NewClient(hs.URL, "", "")
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	regURL := anon.BuildURL(mautrix.SynapseAdminURLPath{"v1", "register"})
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if _, err := anon.MakeRequest(ctx, http.MethodGet, regURL, nil, &nonce); err != nil {
		t.Fatalf("tesths: getting registration nonce: %v", err)
	}
	password := hs.Password(localpart)
	// The MAC format is Synapse's: HMAC-SHA1 over NUL-separated fields.
	mac := hmac.New(sha1.New, []byte(hs.secret))
	mac.Write([]byte(strings.Join([]string{nonce.Nonce, localpart, password, "notadmin"}, "\x00")))
	req := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    false,
		"mac":      hex.EncodeToString(mac.Sum(nil)),
	}
	var resp mautrix.RespRegister
	if _, err := anon.MakeRequest(ctx, http.MethodPost, regURL, req, &resp); err != nil {
		t.Fatalf("tesths: registering %s: %v", localpart, err)
	}
	client, err := mautrix.NewClient(hs.URL, resp.UserID, resp.AccessToken)
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	client.DeviceID = resp.DeviceID
	return client
}

// DoublePuppetRegistration returns an extra appservice registration for
// double puppeting: its as_token may act as any user on domain by adding
// ?user_id=... to requests. It has no URL, which Dendrite takes to mean
// "never push transactions here", and its namespace is non-exclusive so
// it takes nothing away from real users or from the bridge's own
// registration.
func DoublePuppetRegistration(domain string) *appservice.Registration {
	reg := appservice.CreateRegistration()
	suffix := randomHex(6)
	reg.ID = "doublepuppet-" + suffix
	reg.SenderLocalpart = "doublepuppet-" + suffix
	reg.URL = ""
	rateLimited := false
	reg.RateLimited = &rateLimited
	reg.Namespaces.UserIDs.Register(regexp.MustCompile("@.*:"+regexp.QuoteMeta(domain)), false)
	return reg
}

// FreePort returns a currently unused loopback TCP port, for listeners whose
// address has to be known before they start (such as an appservice URL in a
// registration that Dendrite reads at startup).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tesths: finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// dendriteConfig is the whole config file; everything Dendrite would
// otherwise default to a relative path is pointed into dir so parallel
// instances share nothing.
func dendriteConfig(dir, keyPath, secret string, registrations []string) map[string]any {
	// Info is enough to see what failed; debug (which logs every request)
	// can be switched on when chasing a specific problem.
	logLevel := os.Getenv("DMBRIDGE_DENDRITE_LOG_LEVEL")
	if logLevel == "" {
		logLevel = "info"
	}
	sqlite := func(name string) map[string]any {
		// Dendrite has no global SQLite option: with SQLite every component
		// needs its own database section.
		return map[string]any{"connection_string": "file:" + filepath.Join(dir, name+".db")}
	}
	return map[string]any{
		"version": 2,
		"global": map[string]any{
			"server_name":                    Domain,
			"private_key":                    keyPath,
			"disable_federation":             true,
			"trusted_third_party_id_servers": []string{},
			"report_stats":                   map[string]any{"enabled": false},
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
			// Never reach out to matrix.org from a test.
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

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(buf)
}
