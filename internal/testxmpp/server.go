// Package testxmpp runs a real XMPP server (Prosody) for tests, and a small
// XMPP client for playing the remote party ("bob") in them.
//
// Every Start gets its own Prosody process, data directory and loopback
// port, so tests can run in parallel and never see each other's accounts
// or archives. Prosody is not installed here: the project's setup script
// installs the Debian package (apt-get install -y prosody). Starting and
// stopping it is devstack's job, shared with the demo.
package testxmpp

import (
	"context"
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/devstack"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// Domain is the only virtual host of every test server.
const Domain = devstack.ProsodyDomain

// UploadDomain is every test server's HTTP File Upload service.
const UploadDomain = devstack.UploadDomain

const (
	stopGrace = 5 * time.Second
	// Enough of the debug log to see the last few stanzas around a failure.
	failureLogLines = 150
)

// Server is a running Prosody owned by one test.
type Server struct {
	p    *devstack.Prosody
	cert *serverCert // nil without WithStartTLS
}

// Start launches a fresh Prosody on 127.0.0.1 with host Domain. It is
// stopped when the test finishes; if the test failed, the end of its log is
// written to the test log.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	testdb.SkipShort(t, "Prosody")
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	began := time.Now()
	// Not t.TempDir: its parents are private to the test's user, and Prosody
	// may run as another one.
	dir, err := os.MkdirTemp("", "testxmpp-")
	if err != nil {
		t.Fatalf("testxmpp: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	popts := devstack.ProsodyOptions{Dir: dir, NoOffline: !o.offline, UploadLimit: o.uploadLimit, NoUpload: o.noUpload, NoArchive: o.noArchive}
	s := &Server{}
	if o.startTLS {
		if s.cert, err = newServerCert(dir); err != nil {
			t.Fatalf("testxmpp: %v", err)
		}
		popts.TLSCert, popts.TLSKey = s.cert.certFile, s.cert.keyFile
	}
	if s.p, err = devstack.StartProsody(t.Context(), popts); err != nil {
		t.Fatalf("testxmpp: %v", err)
	}
	t.Cleanup(func() { s.cleanup(t) })
	t.Logf("testxmpp: prosody up at %s in %s (data in %s)", s.Addr(), time.Since(began).Round(time.Millisecond), dir)
	return s
}

// Roots trusts the server's certificate (WithStartTLS); nil without TLS.
func (s *Server) Roots() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	return s.cert.roots
}

// Addr is the host:port of the client-to-server listener.
func (s *Server) Addr() string { return s.p.Addr() }

// JID returns the bare JID of a local user.
func (s *Server) JID(user string) string { return s.p.JID(user) }

// LogContains reports whether the server's log holds sub.
func (s *Server) LogContains(sub string) bool { return s.p.LogContains(sub) }

// Register creates an account with prosodyctl. It works while the server
// runs: the internal storage reads accounts from disk at each login.
func (s *Server) Register(t testing.TB, user, password string) {
	t.Helper()
	if err := s.p.Register(t.Context(), user, password); err != nil {
		t.Fatalf("testxmpp: %v", err)
	}
}

// Restart stops Prosody and starts it again on the same port with the same
// data, the way an administrator's restart looks to connected clients.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	if err := s.p.Start(t.Context()); err != nil {
		t.Fatalf("testxmpp: restarting prosody: %v\n%s", err, s.p.Logs(failureLogLines))
	}
}

// Stop stops Prosody (for tests of a server that is down); Restart or the
// test's end bring it back or clean it up.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := s.p.Stop(ctx); err != nil {
		t.Fatalf("testxmpp: %v\n%s", err, s.p.Logs(failureLogLines))
	}
}

func (s *Server) cleanup(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
	defer cancel()
	if err := s.p.Stop(ctx); err != nil {
		t.Errorf("testxmpp: %v", err)
	}
	if t.Failed() {
		t.Logf("testxmpp: prosody (%s):\n%s", s.Addr(), s.p.Logs(failureLogLines))
	}
}
