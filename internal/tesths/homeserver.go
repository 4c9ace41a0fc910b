// Package tesths runs a real Matrix homeserver (Dendrite) for end-to-end
// tests, plus a few helpers for observing it from a test.
//
// Each Start gets its own Dendrite process, data directory and port, so
// tests can run in parallel and never see each other's users or rooms. The
// Dendrite binary is built from the pinned tools module on first use and
// cached across runs (see CacheDir).
package tesths

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/devstack"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// Domain is the server name of every test homeserver.
const Domain = devstack.DendriteDomain

const (
	stopGrace = 5 * time.Second
	// Enough log for the usual "why did the request fail" question without
	// drowning the test output.
	failureLogLines = 100
)

// Homeserver is a running Dendrite instance owned by one test.
type Homeserver struct {
	URL    string // http://127.0.0.1:port
	Domain string // "localhost"

	d *devstack.Dendrite
}

// Start builds Dendrite if needed and starts a fresh instance whose config
// lists the given appservice registrations. The registrations are written
// as-is, so their URLs must already point at wherever the appservice will
// listen (see FreePort). The server is stopped when the test finishes, and
// if the test failed the end of its log is written to the test log.
func Start(t testing.TB, regs ...*appservice.Registration) *Homeserver {
	t.Helper()
	testdb.SkipShort(t, "Dendrite")
	began := time.Now()
	bins, err := ensureBinaries()
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Logf("tesths: built dendrite in %s", d.Round(time.Second))
	}
	dir := t.TempDir()
	regPaths := make([]string, len(regs))
	for i, reg := range regs {
		regPaths[i] = filepath.Join(dir, fmt.Sprintf("appservice-%d.yaml", i))
		if err := reg.Save(regPaths[i]); err != nil {
			t.Fatalf("tesths: writing registration %q: %v", reg.ID, err)
		}
	}
	d, err := devstack.StartDendrite(t.Context(), devstack.DendriteOptions{
		Dir:           filepath.Join(dir, "dendrite"),
		Registrations: regPaths,
		Binaries:      bins,
	})
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	hs := &Homeserver{URL: d.URL, Domain: Domain, d: d}
	t.Cleanup(func() { hs.stop(t) })
	t.Logf("tesths: dendrite up at %s in %s (data in %s)", hs.URL, time.Since(began).Round(time.Millisecond), d.Dir)
	return hs
}

func (hs *Homeserver) stop(t testing.TB) {
	// SIGTERM lets Dendrite close its SQLite files; the data is thrown
	// away anyway, so a slow shutdown only gets a few seconds.
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := hs.d.Stop(ctx); err != nil {
		select {
		case <-hs.d.Exited():
			// Dendrite has no business exiting on its own while a test uses it.
			t.Errorf("tesths: dendrite exited before the end of the test: %v", hs.d.ExitErr())
		default:
		}
	}
	if t.Failed() {
		t.Logf("tesths: last %d lines of %s:\n%s", failureLogLines, hs.d.LogPath, hs.LogTail(failureLogLines))
	}
}

// LogTail returns the last n lines Dendrite has logged.
func (hs *Homeserver) LogTail(n int) string { return hs.d.LogTail(n) }

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
	resp, err := hs.d.RegisterUser(t.Context(), localpart, hs.Password(localpart))
	if err != nil {
		t.Fatalf("tesths: %v", err)
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
	return devstack.DoublePuppetRegistration(domain)
}

// FreePort returns a currently unused loopback TCP port, for listeners whose
// address has to be known before they start (such as an appservice URL in a
// registration that Dendrite reads at startup).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatalf("tesths: %v", err)
	}
	return port
}

// Pid is Dendrite's process id, for tests that pause it (SIGSTOP) to hold
// the bridge's homeserver calls.
func (hs *Homeserver) Pid() int { return hs.d.Pid() }
