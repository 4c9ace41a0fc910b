package xmppconnector

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// A message's XEP-0203 <delay/> says when it was sent, and the connector
// dates a message by it only when the account's own server added it:
// Prosody (mod_offline) and ejabberd put one, from the server's domain,
// on each message they stored while the account was offline, when they
// deliver it. But a delay is just an element of the message: any sender
// can write one with from set to the user's domain, and the server passes
// it on untouched. Nothing in the element tells the two apart; when it
// arrives does. A server delivers stored messages right after the
// session's initial presence, all of them before it handles the session's
// next stanza (Prosody does it in the same step as the presence). So the
// connector writes its initial presence and a ping to its server in one
// write, and the read loop marks the messages that arrive before the
// ping's answer as the offline flood. Only those may be dated by a delay;
// any other is dated when it arrives. The stamp trusted is the message's
// last delay, since the server appends its own after whatever the sender
// wrote.

// offlineFlood is the span of a connection in which its server delivers
// the messages it stored: from the initial presence to the answer of the
// ping written with it.
type offlineFlood struct {
	mu    sync.Mutex
	id    string // of the ping that ends it
	to    string // whom the ping was sent to, who must answer it
	open  bool
	ended chan struct{} // closed once it is over
}

func newOfflineFlood() *offlineFlood { return &offlineFlood{ended: make(chan struct{})} }

// begin opens the flood until the answer to the ping id sent to to, and
// returns the channel closed when it ends.
func (f *offlineFlood) begin(id, to string) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.id, f.to, f.open = id, to, true
	return f.ended
}

// isOpen reports whether a message read now belongs to the flood.
func (f *offlineFlood) isOpen() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

// answered ends the flood if an IQ answer with id from from is the
// answer to its ping; the read loop calls it, so that no message read
// after that answer counts as stored.
func (f *offlineFlood) answered(id, from string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	// A server may leave out its own address: a stanza without from
	// comes from the account's server (RFC 6120 8.1.2.1), never from a
	// contact, whose stanzas the server addresses.
	if !f.open || id != f.id || (from != f.to && from != "") {
		return false
	}
	f.endLocked()
	return true
}

// end closes the flood whatever came: a server that never answers the
// ping must not leave it open.
func (f *offlineFlood) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.endLocked()
}

func (f *offlineFlood) endLocked() {
	if f.ended == nil {
		return
	}
	f.open = false
	close(f.ended)
	f.ended = nil
}

type pingIQ struct {
	iqOut
	Ping struct {
		XMLName xml.Name `xml:"urn:xmpp:ping ping"`
	}
}

// sendInitialPresence writes the initial presence and, in the same write,
// the ping that ends the offline flood, then waits for its answer. The
// answer is taken by the read loop (handle), not by mellium's request
// matching, so the flood ends exactly where the answer is in the stream.
// A server that has not answered by the time ctx ends has the flood ended
// there: what it delivers later is dated on arrival, and the connection is
// used all the same.
func (c *xmppConn) sendInitialPresence(ctx context.Context, pres presenceOut, domain string) error {
	ping := pingIQ{iqOut: newRequest("get", domain)}
	ended := c.flood.begin(ping.ID, domain)
	if err := c.sendTogether(ctx, pres, ping); err != nil {
		c.flood.end()
		return fmt.Errorf("sending initial presence: %w", err)
	}
	select {
	case <-ended:
	case <-c.done:
		c.flood.end()
		return errors.New("the XMPP stream ended before the server delivered stored messages")
	case <-ctx.Done():
		c.flood.end()
		c.log.Warn().Msg("The XMPP server did not answer the ping after the initial presence; messages it delivers from offline storage from now on are dated on arrival")
	}
	return nil
}

// sendTogether writes stanzas with one flush: the server then reads them
// together, and handles nobody else's stanzas in between. mellium's token
// writer takes no context, so ctx's deadline is the connection's write
// deadline meanwhile: a server that stops reading cannot hold the login.
func (c *xmppConn) sendTogether(ctx context.Context, stanzas ...any) error {
	if dl, ok := ctx.Deadline(); ok {
		conn := c.sess.Conn()
		if err := conn.SetWriteDeadline(dl); err == nil {
			defer func() { _ = conn.SetWriteDeadline(time.Time{}) }()
		}
	}
	w := c.sess.TokenWriter()
	for _, v := range stanzas {
		b, err := xml.Marshal(v)
		if err != nil {
			_ = w.Close()
			return fmt.Errorf("encoding stanza: %w", err)
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		for {
			tok, err := d.RawToken()
			if errors.Is(err, io.EOF) {
				break
			}
			if err == nil {
				err = w.EncodeToken(tok)
			}
			if err != nil {
				_ = w.Close()
				return fmt.Errorf("writing stanza: %w", err)
			}
		}
	}
	return w.Close()
}
