package xmppconnector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// On real Prosody requiring STARTTLS (c2s_require_encryption), with a
// certificate the connector verifies, the default tls mode logs in and a
// message goes each way through the TLS stream, read through the split
// reader above TLS: Prosody refuses to authenticate on a plaintext stream,
// so the login itself shows the stream was encrypted.
func TestStartTLSMessagesBothWays(t *testing.T) {
	t.Parallel()
	e, bob := startConfiguredWithBob(t, func(e *env) {
		e.cfg.XMPP.TLS, e.cfg.XMPP.rootCAs = TLSStartTLS, e.xmpp.Roots()
	}, testxmpp.WithStartTLS())

	// 200 KB, three split reader pieces (splitChunk), so that the split
	// and the stanza limits run on the decrypted stream; under Prosody's
	// own limit (256 KiB).
	long := strings.Repeat("over TLS ", 200_000/9)
	bob.SendChat(t, e.alice, long, "")
	e.bridge.waitEvent(t, "bob's message over TLS", isMessage(long))

	cmd := &connector.Command{Login: e.alice, Chat: e.bobChat(), Txn: "$tls:localhost", Text: "alice over TLS"}
	if _, err := e.bridge.command(t, connector.OpSendMessage, cmd); err != nil {
		t.Fatalf("send_message: %v", err)
	}
	if got := bob.Next(t, waitLong, testxmpp.WithBody); got.Body != cmd.Text {
		t.Fatalf("bob got %+v, want alice's message", got)
	}
}

// The certificate is verified: without the test's roots (so with the
// system's), the same server is refused.
func TestStartTLSVerifiesCertificate(t *testing.T) {
	t.Parallel()
	srv := testxmpp.Start(t, testxmpp.WithStartTLS())
	srv.Register(t, "alice", alicePW)
	cfg := aliceConfig(t, srv)
	cfg.XMPP.TLS = TLSStartTLS
	err := loginFails(t, &cfg, "logged in over TLS with a certificate nobody trusts")
	if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("login failed for another reason than the certificate: %v", err)
	}
	t.Logf("refused: %v", err)
}

// A server that offers no STARTTLS (the plain test Prosody) does not get
// the password over plaintext when tls is starttls: mellium asks for
// STARTTLS anyway, the server refuses, and the login fails saying so. The
// connector running on it never reports the account connected.
func TestStartTLSRefusesServerWithoutTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.XMPP.TLS = TLSStartTLS
	err := loginFails(t, e.cfg, "logged in without TLS although tls is starttls")
	if !strings.Contains(err.Error(), "STARTTLS failed") {
		t.Errorf("the error does not say STARTTLS failed: %v", err)
	}
	t.Logf("refused: %v", err)

	c, err := New(t.Context(), e.cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		<-done
		_ = c.Close()
	}()
	for deadline := time.Now().Add(waitLong); !e.bridge.srv.Connected("xmpp"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the connector never connected to the bridge")
		}
	}
	// A few login attempts' worth (backoff 100 ms to 1 s).
	time.Sleep(2 * time.Second)
	if n := len(e.bridge.matching(isLogin(connector.LoginConnected))); n != 0 {
		t.Fatalf("the login was reported connected %d times without TLS", n)
	}
}

// loginFails logs the config's first account in, and returns why it
// failed; a login that succeeds fails the test with success.
func loginFails(t *testing.T, cfg *Config, success string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLong)
	defer cancel()
	sess, err := login(ctx, &cfg.XMPP, &cfg.Accounts[0])
	if err == nil {
		_ = sess.Close()
		t.Fatal(success)
	}
	return err
}
