package xmppconnector

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// A server (or whoever sits on the unauthenticated connection before
// STARTTLS) that answers the stream header with 32 MiB of XML before any
// TLS: the connector gives up after maxPreTLS bytes, whatever the shape.
// The server is on a net.Pipe, whose writes return only what the
// connector read, so the count is exactly what the connector took in.
func TestStartTLSBoundsWhatComesBeforeTLS(t *testing.T) {
	t.Parallel()
	header := `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='1' version='1.0'`
	for _, tc := range []struct {
		name               string
		prefix, pad, final string
	}{
		{"many features", header + `><stream:features>`, `<x xmlns='urn:example:pad'/>`, `</stream:features>`},
		{"one huge attribute", header + `><stream:features><x xmlns='urn:example:pad' a='`, `a`, `'/></stream:features>`},
		{"endless stream header", header + ` a='`, `a`, `'><stream:features/>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			read, err := loginAgainst(t, hostile(tc.prefix, repeatOf(tc.pad), tc.final))
			t.Logf("the connector read %d bytes: %v", read, err)
			if !errors.Is(err, errPreTLSTooLarge) {
				t.Errorf("the login did not fail at the pre-TLS limit: %v", err)
			}
			if read > maxPreTLS {
				t.Fatalf("the connector read %d bytes before TLS, more than %d", read, maxPreTLS)
			}
		})
	}
}

// loginAgainst runs a STARTTLS login of alice against a server that
// writes src and then closes, and returns how many of src's bytes the
// connector read, and why the login failed.
func loginAgainst(t *testing.T, src io.Reader) (int, error) {
	t.Helper()
	cli, srv := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, srv) }()
	written := make(chan int, 1)
	go func() {
		n := 0
		buf := make([]byte, 4096)
		for {
			m, rerr := src.Read(buf)
			w, werr := srv.Write(buf[:m])
			n += w
			if rerr != nil || werr != nil {
				break
			}
		}
		_ = srv.Close()
		written <- n
	}()
	cfg := &XMPPConfig{TLS: TLSStartTLS}
	account := &AccountConfig{JID: "alice@localhost", Password: alicePW}
	origin := jid.MustParse(account.JID)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	sess, err := negotiate(ctx, cfg, account, origin, &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}, cli)
	if err == nil {
		_ = sess.Close()
		t.Fatal("logged in to a server that sent no TLS")
	}
	_ = cli.Close()
	return <-written, err
}
