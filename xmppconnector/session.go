package xmppconnector

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/dial"
	"mellium.im/xmpp/jid"
)

// errBadCredentials is returned by login when the server refused the
// password: retrying will not help until the operator fixes it.
var errBadCredentials = errors.New("the XMPP server refused the password")

// login dials the server and negotiates an authenticated, bound stream
// for account.
func login(ctx context.Context, cfg *XMPPConfig, account *AccountConfig) (*xmpp.Session, error) {
	origin, err := jid.Parse(account.JID)
	if err != nil {
		return nil, fmt.Errorf("account jid: %w", err)
	}
	domain := origin.Domain()
	tlsCfg := &tls.Config{ServerName: domain.String(), RootCAs: cfg.rootCAs, InsecureSkipVerify: cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}

	conn, err := dialServer(ctx, cfg, origin, tlsCfg)
	if err != nil {
		return nil, err
	}
	return negotiate(ctx, cfg, account, origin, tlsCfg, conn)
}

// negotiate negotiates an authenticated, bound stream for account on conn,
// a connection to its server (with TLS already if cfg.TLS is direct).
func negotiate(ctx context.Context, cfg *XMPPConfig, account *AccountConfig, origin jid.JID, tlsCfg *tls.Config, conn net.Conn) (*xmpp.Session, error) {
	domain := origin.Domain()
	var state xmpp.SessionState
	features := []xmpp.StreamFeature{}
	// What the XML decoder reads goes through a splitReader (xmlsplit.go),
	// above TLS: below it, the bytes are ciphertext. The plaintext before
	// STARTTLS is bounded on its own (pretls.go).
	switch cfg.TLS {
	case TLSStartTLS:
		pre := newPreTLSConn(conn)
		conn = pre
		features = append(features, splitAfterStartTLS(xmpp.StartTLS(tlsCfg), cfg.MaxStanzaSize, pre))
	case TLSDirect:
		state = xmpp.Secure
		conn = newSplitConn(conn, cfg.MaxStanzaSize)
	case TLSPlaintext:
		// mellium authenticates only on a secure stream; the operator has
		// declared this one secure (a loopback test server).
		state = xmpp.Secure
		conn = newSplitConn(conn, cfg.MaxStanzaSize)
	}
	features = append(features,
		xmpp.SASL("", account.Password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		xmpp.BindResource(),
	)
	sess, err := xmpp.NewSession(ctx, domain, origin, conn, state, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		_ = conn.Close()
		if isAuthFailure(err) {
			return nil, fmt.Errorf("%w: %v", errBadCredentials, err)
		}
		return nil, fmt.Errorf("negotiating the XMPP stream: %w", err)
	}
	return sess, nil
}

// splitAfterStartTLS is the STARTTLS feature with the TLS connection it
// negotiates read through a splitReader; the plaintext before it is only
// the stream header and the STARTTLS exchange, read through pre, whose
// limit is lifted once the server said proceed. mellium asks for STARTTLS
// even of a server that does not offer it (RFC 7590: no downgrade), and
// such a server answers with an error of its own, named here for what it
// means to the operator.
func splitAfterStartTLS(f xmpp.StreamFeature, maxStanza int, pre *preTLSConn) xmpp.StreamFeature {
	negotiate := f.Negotiate
	f.Negotiate = func(ctx context.Context, s *xmpp.Session, data any) (xmpp.SessionState, io.ReadWriter, error) {
		mask, rw, err := negotiate(ctx, s, data)
		if errors.Is(err, errPreTLSTooLarge) {
			return mask, rw, err
		}
		if err != nil {
			return mask, rw, fmt.Errorf("STARTTLS failed (xmpp.tls is starttls; the server may offer no TLS): %w", err)
		}
		// The TLS handshake starts at the next write, after this returns:
		// everything read below TLS from now on is ciphertext, bounded by
		// crypto/tls, and what it decrypts by the splitReader.
		pre.lift()
		if c, ok := rw.(net.Conn); ok {
			rw = newSplitConn(c, maxStanza)
		}
		return mask, rw, nil
	}
	return f
}

func dialServer(ctx context.Context, cfg *XMPPConfig, origin jid.JID, tlsCfg *tls.Config) (net.Conn, error) {
	if cfg.Server == "" {
		// SRV lookup (xmpp-client and xmpps-client) as RFC 6120 describes.
		d := dial.Dialer{NoTLS: cfg.TLS != TLSDirect, TLSConfig: tlsCfg}
		conn, err := d.Dial(ctx, "tcp", origin)
		if err != nil {
			return nil, fmt.Errorf("dialing the XMPP server of %s: %w", origin.Domain(), err)
		}
		return conn, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: %w", cfg.Server, err)
	}
	if cfg.TLS == TLSDirect {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("TLS with %s: %w", cfg.Server, err)
		}
		return tc, nil
	}
	return conn, nil
}

// isAuthFailure recognises a SASL failure that a retry cannot fix.
// mellium keeps its SASL error type internal and its message is the
// server's free text, so the condition is read from the error's exported
// Condition field by reflection.
func isAuthFailure(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			continue
		}
		f := v.FieldByName("Condition")
		if !f.IsValid() || !f.CanInterface() {
			continue
		}
		if s, ok := f.Interface().(fmt.Stringer); ok {
			switch s.String() {
			case "not-authorized", "account-disabled", "credentials-expired", "invalid-authzid":
				return true
			}
		}
	}
	return false
}
