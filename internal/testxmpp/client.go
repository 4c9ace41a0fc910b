package testxmpp

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"mellium.im/sasl"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/internal/xmppclient"
)

// Client is a plain XMPP client for the remote party of a test. It speaks
// raw XML on purpose: it should look like any other client on the network,
// not share code (and mistakes) with the connector under test. What it does
// share (internal/xmppclient: closing the stream, the server's upload slot)
// carries nothing the connector writes.
type Client struct {
	// JID is the full JID the server bound.
	JID  string
	sess *xmpp.Session

	mu       sync.Mutex
	messages []*Message
	// approvedBy holds the bare JIDs that approved our subscription:
	// they sent presence type subscribed, or their available presence
	// (Prosody sends the latter in place of the former).
	approvedBy map[string]bool
	arrived    chan struct{} // closed and replaced when a message arrives
	done       chan struct{}
}

// Message is a received message stanza, reduced to what tests look at.
type Message struct {
	From, To, ID, Type string
	Body               string
	OriginID           string
	Replace            string // XEP-0308 id of the corrected message
	Retract            string // XEP-0424 id of the retracted message
	ReactionsTo        string // XEP-0444 id of the message reacted to
	Reactions          []string
	ReplyTo            string // XEP-0461 id
	ChatState          string // XEP-0085 element name
	Displayed          string // XEP-0333 id
	OOB                string // XEP-0066 url: how clients send files
}

// Dial logs user in, sends initial presence and starts collecting
// messages. Subscription requests are approved automatically, like a
// friendly contact would. The client is closed when the test ends.
func (s *Server) Dial(t testing.TB, user, password string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		t.Fatalf("testxmpp: dialing %s: %v", s.Addr(), err)
	}
	origin := jid.MustParse(s.JID(user))
	// Secure because the loopback stream has no TLS, which the server
	// config allows, and mellium would otherwise refuse to authenticate;
	// a server that requires TLS gets STARTTLS.
	state := xmpp.Secure
	var features []xmpp.StreamFeature
	if s.cert != nil {
		state = 0
		features = append(features, xmpp.StartTLS(&tls.Config{ServerName: Domain, RootCAs: s.cert.roots, MinVersion: tls.VersionTLS12}))
	}
	features = append(features,
		xmpp.SASL("", password, sasl.ScramSha256, sasl.ScramSha1, sasl.Plain),
		xmpp.BindResource(),
	)
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, conn, state, xmpp.NewNegotiator(
		func(*xmpp.Session, *xmpp.StreamConfig) xmpp.StreamConfig {
			return xmpp.StreamConfig{Features: features}
		}))
	if err != nil {
		_ = conn.Close()
		t.Fatalf("testxmpp: logging in %s: %v", user, err)
	}
	c := &Client{JID: sess.LocalAddr().String(), sess: sess, arrived: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		_ = sess.Serve(xmpp.HandlerFunc(c.handle))
	}()
	t.Cleanup(c.Close)
	c.SendRaw(t, `<presence/>`)
	return c
}

// Close ends the stream and waits for the server to close its side.
func (c *Client) Close() {
	xmppclient.Close(c.sess, c.done)
}

// Bare is the client's bare JID.
func (c *Client) Bare() string {
	b, _, _ := strings.Cut(c.JID, "/")
	return b
}

// SendRaw sends one stanza given as XML text.
func (c *Client) SendRaw(t testing.TB, stanza string) {
	t.Helper()
	// Not a per-call context: mellium arms the write deadline from it in a
	// goroutine that may still fire after Send returned and cancel() ran,
	// breaking a concurrent writer's stanza (the handler answers IQs).
	if err := c.sess.Send(context.Background(), xml.NewDecoder(strings.NewReader(stanza))); err != nil {
		t.Fatalf("testxmpp: sending %s: %v", stanza, err)
	}
}

// SendBytes writes one stanza to the connection as it is given: SendRaw
// goes through mellium's encoder, which escapes every quote in an
// attribute value, so it cannot send the bytes a test about the server's
// own escaping needs. Only for a client whose handler writes nothing
// meanwhile.
func (c *Client) SendBytes(t testing.TB, stanza string) {
	t.Helper()
	if _, err := io.WriteString(c.sess.Conn(), stanza); err != nil {
		t.Fatalf("testxmpp: writing %d bytes: %v", len(stanza), err)
	}
}

// Next waits for the next message for which keep returns true (nil keeps
// all), skipping and consuming the others.
func (c *Client) Next(t testing.TB, timeout time.Duration, keep func(*Message) bool) *Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		for len(c.messages) > 0 {
			m := c.messages[0]
			c.messages = c.messages[1:]
			if keep == nil || keep(m) {
				c.mu.Unlock()
				return m
			}
		}
		arrived := c.arrived
		c.mu.Unlock()
		select {
		case <-arrived:
		case <-deadline:
			t.Fatalf("testxmpp: %s got no matching message within %s", c.JID, timeout)
		}
	}
}

// ApprovedBy reports whether who (a bare JID) approved this client's
// presence subscription: it sent subscribed, or its presence arrived.
func (c *Client) ApprovedBy(who string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.approvedBy[who]
}

// Drain returns every message received so far without waiting.
func (c *Client) Drain() []*Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.messages
	c.messages = nil
	return out
}

// WithBody keeps messages that have a body.
func WithBody(m *Message) bool { return m.Body != "" }

// handle runs on the session's read loop: it may answer on w but must not
// use the session's send methods.
func (c *Client) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	d := xml.NewTokenDecoder(xmlstream.MultiReader(xmlstream.Token(*start), r))
	switch start.Name.Local {
	case "message":
		var m rawMessage
		if err := d.Decode(&m); err != nil {
			return fmt.Errorf("decoding message: %w", err)
		}
		c.mu.Lock()
		c.messages = append(c.messages, m.reduce())
		close(c.arrived)
		c.arrived = make(chan struct{})
		c.mu.Unlock()
	case "presence":
		var p struct {
			From string `xml:"from,attr"`
			Type string `xml:"type,attr"`
		}
		if err := d.Decode(&p); err != nil {
			return fmt.Errorf("decoding presence: %w", err)
		}
		if p.Type == "subscribed" || p.Type == "" {
			c.mu.Lock()
			if c.approvedBy == nil {
				c.approvedBy = make(map[string]bool)
			}
			bare, _, _ := strings.Cut(p.From, "/")
			c.approvedBy[bare] = true
			c.mu.Unlock()
		}
		if p.Type == "subscribe" {
			return r.Encode(struct {
				XMLName xml.Name `xml:"presence"`
				To      string   `xml:"to,attr"`
				Type    string   `xml:"type,attr"`
			}{To: p.From, Type: "subscribed"})
		}
	}
	return nil
}

type idAttr struct {
	ID string `xml:"id,attr"`
}

type rawMessage struct {
	From      string  `xml:"from,attr"`
	To        string  `xml:"to,attr"`
	ID        string  `xml:"id,attr"`
	Type      string  `xml:"type,attr"`
	Body      string  `xml:"body"`
	OriginID  *idAttr `xml:"urn:xmpp:sid:0 origin-id"`
	Replace   *idAttr `xml:"urn:xmpp:message-correct:0 replace"`
	Retract   *idAttr `xml:"urn:xmpp:message-retract:1 retract"`
	Reply     *idAttr `xml:"urn:xmpp:reply:0 reply"`
	Displayed *idAttr `xml:"urn:xmpp:chat-markers:0 displayed"`
	OOB       *struct {
		URL string `xml:"url"`
	} `xml:"jabber:x:oob x"`
	Reactions *struct {
		ID        string   `xml:"id,attr"`
		Reactions []string `xml:"reaction"`
	} `xml:"urn:xmpp:reactions:0 reactions"`
	States []struct {
		XMLName xml.Name
	} `xml:",any"`
}

func (m *rawMessage) reduce() *Message {
	out := &Message{From: m.From, To: m.To, ID: m.ID, Type: m.Type, Body: m.Body}
	val := func(a *idAttr) string {
		if a == nil {
			return ""
		}
		return a.ID
	}
	out.OriginID, out.Replace, out.Retract = val(m.OriginID), val(m.Replace), val(m.Retract)
	out.ReplyTo, out.Displayed = val(m.Reply), val(m.Displayed)
	if m.OOB != nil {
		out.OOB = m.OOB.URL
	}
	if m.Reactions != nil {
		out.ReactionsTo, out.Reactions = m.Reactions.ID, m.Reactions.Reactions
	}
	for _, el := range m.States {
		if el.XMLName.Space == "http://jabber.org/protocol/chatstates" {
			out.ChatState = el.XMLName.Local
		}
	}
	return out
}
