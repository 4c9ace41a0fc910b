package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"net"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stanza"
)

// chatMessage is what an ordinary client sends: a chat message whose id
// is also its origin-id (XEP-0359).
type chatMessage struct {
	stanza.Message
	Body     string `xml:"body"`
	OriginID struct {
		XMLName xml.Name `xml:"urn:xmpp:sid:0 origin-id"`
		ID      string   `xml:"id,attr"`
	}
}

// sendAsBob logs in as an XMPP user, sends one chat message and logs out:
// the part of an XMPP client the demo needs to play bob.
func sendAsBob(ctx context.Context, server, user, password, to, body, id string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", server)
	if err != nil {
		return fmt.Errorf("dialing %s: %w", server, err)
	}
	origin, err := jid.Parse(user)
	if err != nil {
		_ = conn.Close()
		return err
	}
	// Secure: the loopback server has no TLS, and mellium would otherwise
	// refuse to authenticate.
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, xmpp.Secure, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: []xmpp.StreamFeature{
				xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1),
				xmpp.BindResource(),
			}}
		}))
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("logging in as %s: %w", user, err)
	}
	defer conn.Close()
	defer sess.Close()
	to2, err := jid.Parse(to)
	if err != nil {
		return err
	}
	msg := chatMessage{Message: stanza.Message{To: to2, Type: stanza.ChatMessage, ID: id}, Body: body}
	msg.OriginID.ID = id
	if err := sess.Encode(ctx, msg); err != nil {
		return fmt.Errorf("sending as %s: %w", user, err)
	}
	return nil
}
