package xmppconnector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmlstream"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/ping"

	"github.com/dmbridge/dmbridge/internal/xmppclient"
)

// stanzaSink receives the stanzas of a connection, on its read loop: it
// must not block, nor use the connection to send.
type stanzaSink interface {
	onMessage(c *xmppConn, m *message)
	onPresence(c *xmppConn, p *presence)
}

// xmppConn is one live XMPP stream of an account.
type xmppConn struct {
	sess *xmpp.Session
	bare string // the account's bare JID
	log  zerolog.Logger
	sink stanzaSink
	caps capabilities
	// maxText bounds the character data of a stanza decoded whole (see
	// textLimit).
	maxText int
	// streamed is where requestStreamed registers the ids of answers it
	// reads as they arrive; nil on a connection not read through a
	// splitReader.
	streamed *streamedAnswers
	// upload is the server's HTTP File Upload service, nil if it has none
	// (or did not say); set before the connection is published.
	upload *uploadService

	done chan struct{} // closed when the read loop has ended
	err  error         // why it ended; valid once done is closed
	// life is cancelled when the read loop ends. Writes use it rather than
	// a per-call context: mellium arms the write deadline from the context
	// in a goroutine that may still fire after the write returned and a
	// per-call cancel ran, breaking the next writer's stanza.
	life    context.Context
	endLife context.CancelFunc

	mamMu sync.Mutex
	mam   map[string]*[]mamItem // archive query id → results so far

	// caughtUp is set when an archive catch-up of this connection has
	// bridged everything up to then, and cleared when a catch-up or a
	// message fails to bridge; while it is clear the archive is swept
	// sooner (see serve). Only catch-ups move the cursor, whatever it says.
	caughtUp atomic.Bool
	// catchUpQueued is set while a catch-up of this connection waits in
	// the worker's queue (see queueCatchUp).
	catchUpQueued atomic.Bool
	// skippedOversized is set once a catch-up of this connection, cut
	// short by an archived stanza over the limit, moved its cursor past it
	// (see oversized.go).
	skippedOversized atomic.Bool
	// noArchive is set once the server answered an archive query as one
	// without an archive: later sweeps of this connection do not ask.
	noArchive atomic.Bool
	// flood tells the messages the server stored while the account was
	// offline from live ones (see offline.go).
	flood *offlineFlood
}

// newConn starts the read loop of an established session, whose stanzas
// decoded whole may hold up to maxStanza bytes of text (0 for the default).
func newConn(sess *xmpp.Session, bare string, sink stanzaSink, maxStanza int, log zerolog.Logger) *xmppConn {
	if maxStanza <= 0 {
		maxStanza = defaultMaxStanza
	}
	c := &xmppConn{
		sess:    sess,
		bare:    bare,
		log:     log,
		sink:    sink,
		caps:    newCapabilities(),
		maxText: maxStanza,
		done:    make(chan struct{}),
		mam:     make(map[string]*[]mamItem),
		flood:   newOfflineFlood(),
	}
	if sc, ok := sess.Conn().(*splitConn); ok {
		c.streamed = sc.r.answers
	}
	c.life, c.endLife = context.WithCancel(context.Background())
	go func() {
		c.err = sess.Serve(xmpp.HandlerFunc(c.handle))
		close(c.done)
		c.endLife()
	}()
	return c
}

// close ends the stream; the read loop ends once the server closes its side.
func (c *xmppConn) close() {
	xmppclient.Close(c.sess, c.done)
}

// keepAlive pings the server every interval and closes the connection when
// a ping goes unanswered: a silently dropped TCP connection would
// otherwise go unnoticed until the next send.
func (c *xmppConn) keepAlive(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.done:
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := ping.Send(pctx, c.sess, jid.MustParse(c.bare).Domain())
		timedOut := pctx.Err() != nil
		cancel()
		// An error answer still proves the stream is alive; only silence
		// means it is dead.
		if err != nil && timedOut && ctx.Err() == nil {
			c.log.Warn().Err(err).Msg("XMPP server did not answer a ping; reconnecting")
			_ = c.sess.Conn().Close()
			return
		}
	}
}

// handle runs on the read loop for every top-level element.
func (c *xmppConn) handle(r xmlstream.TokenReadEncoder, start *xml.StartElement) error {
	// The stanza's rest is skipped by mellium when this returns, in pieces
	// (xmlsplit.go), however large it was.
	d := xml.NewTokenDecoder(newTextLimit(xmlstream.MultiReader(xmlstream.Token(*start), r), c.maxText))
	switch start.Name.Local {
	case "message":
		var m message
		if err := d.Decode(&m); errors.Is(err, errXMLTooLarge) {
			c.oversized(&m, err)
			return nil
		} else if err != nil {
			c.log.Warn().Err(err).Msg("Could not decode a message stanza")
			return nil
		}
		if m.Result != nil && c.collectArchived(&m) {
			return nil
		}
		m.stored = c.flood.isOpen()
		c.sink.onMessage(c, &m)
	case "presence":
		var p presence
		if err := d.Decode(&p); err != nil {
			c.log.Warn().Err(err).Msg("Could not decode a presence stanza")
			return nil
		}
		c.sink.onPresence(c, &p)
	case "iq":
		if typ, id, from := iqAddressing(start); typ == "result" || typ == "error" {
			c.flood.answered(id, from)
		}
		return c.answerIQ(r, d)
	}
	return nil
}

// iqAddressing returns an IQ's type, id and from.
func iqAddressing(start *xml.StartElement) (typ, id, from string) {
	for _, a := range start.Attr {
		switch a.Name.Local {
		case "type":
			typ = a.Value
		case "id":
			id = a.Value
		case "from":
			from = a.Value
		}
	}
	return typ, id, from
}

// answerIQ answers the requests a client must: disco#info (so the server
// learns our +notify features for PEP), ping, and roster pushes.
func (c *xmppConn) answerIQ(w xmlstream.TokenReadEncoder, d *xml.Decoder) error {
	var iq struct {
		ID      string `xml:"id,attr"`
		Type    string `xml:"type,attr"`
		From    string `xml:"from,attr"`
		Payload struct {
			XMLName xml.Name
			Node    string `xml:"node,attr"`
		} `xml:",any"`
	}
	if err := d.Decode(&iq); err != nil {
		return nil
	}
	if iq.Type != "get" && iq.Type != "set" {
		return nil
	}
	switch iq.Payload.XMLName.Space {
	case nsDiscoInfo:
		if iq.Type == "get" {
			return w.Encode(c.caps.discoResult(iq.ID, iq.From, iq.Payload.Node))
		}
	case nsPing:
		return w.Encode(emptyResult(iq.ID, iq.From))
	case "jabber:iq:roster":
		// Roster pushes come from our own account only (from empty).
		if iq.From == "" {
			return w.Encode(emptyResult(iq.ID, iq.From))
		}
	}
	// mellium answers anything else with service-unavailable.
	return nil
}

// emptyResult answers the IQ id from to with nothing but success.
func emptyResult(id, to string) iqOut {
	return iqOut{ID: id, To: to, Type: "result"}
}

// send writes one stanza (a struct that marshals to it).
func (c *xmppConn) send(ctx context.Context, v any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sending stanza: %w", err)
	}
	if err := c.sess.Encode(c.life, v); err != nil {
		return fmt.Errorf("sending stanza: %w", err)
	}
	return nil
}

// requestTimeout bounds every IQ: a server that does not answer within it
// is treated like a dead one.
const requestTimeout = 30 * time.Second

// bound limits ctx to the life of the connection and to requestTimeout: a
// request on a stream that died would otherwise wait for an answer forever.
func (c *xmppConn) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// alive reports whether the read loop still runs.
func (c *xmppConn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// request sends an IQ (with its ID set) and decodes the answer's header and
// payload; an error IQ comes back as *iqError.
func (c *xmppConn) request(ctx context.Context, iq any, payload any) error {
	return c.exchange(ctx, iq, func(resp xml.TokenReader) error {
		var answer iqHeader
		if err := xml.NewTokenDecoder(newTextLimit(resp, c.maxText)).Decode(&answer); err != nil {
			return fmt.Errorf("reading IQ answer: %w", err)
		}
		if answer.Type == "error" {
			return &iqError{Condition: answer.condition()}
		}
		if payload == nil || len(answer.Raw) == 0 {
			return nil
		}
		return answer.Raw[0].decode(payload)
	})
}

// readAnswer sends iq and hands its answer to read as it arrives, after
// its start tag (the decoder is at the IQ's first child); an error answer
// comes back as *iqError, read without its payload, and read is not called.
func (c *xmppConn) readAnswer(ctx context.Context, iq any, read func(d *xml.Decoder) error) error {
	return c.exchange(ctx, iq, func(resp xml.TokenReader) error {
		d := xml.NewTokenDecoder(resp)
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("reading IQ answer: %w", err)
		}
		start, ok := tok.(xml.StartElement)
		if !ok {
			return fmt.Errorf("reading IQ answer: %T where the IQ should start", tok)
		}
		for _, at := range start.Attr {
			if at.Name.Local == "type" && at.Value == "error" {
				// Decoded without iqHeader's Raw, which would keep a copy
				// of whatever payload the error carries.
				var e iqErrorAnswer
				if err := d.DecodeElement(&e, &start); err != nil {
					return fmt.Errorf("reading IQ error: %w", err)
				}
				return &iqError{Condition: e.Error.condition()}
			}
		}
		return read(d)
	})
}

// iqErrorAnswer is an IQ of type error, without its payload.
type iqErrorAnswer struct {
	Error *stanzaErrorEl `xml:"error"`
}

// exchange sends iq and hands its answer, start tag first, to read.
func (c *xmppConn) exchange(ctx context.Context, iq any, read func(resp xml.TokenReader) error) error {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	resp, err := c.sess.EncodeIQ(ctx, iq)
	if err != nil {
		return fmt.Errorf("sending IQ: %w", err)
	}
	defer resp.Close()
	return read(resp)
}

// rawEl keeps an element's tokens so it can be decoded a second time, once
// the caller knows what it is.
type rawEl struct {
	toks []xml.Token
}

func (e *rawEl) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	e.toks = append(e.toks, start.Copy())
	for level := 1; level > 0; {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			level++
		case xml.EndElement:
			level--
		}
		e.toks = append(e.toks, xml.CopyToken(tok))
	}
	return nil
}

func (e *rawEl) decode(v any) error {
	i := 0
	d := xml.NewTokenDecoder(tokenSlice(func() (xml.Token, error) {
		if i >= len(e.toks) {
			return nil, io.EOF
		}
		i++
		return e.toks[i-1], nil
	}))
	return d.Decode(v)
}

type tokenSlice func() (xml.Token, error)

func (f tokenSlice) Token() (xml.Token, error) { return f() }

// iqError is an IQ answered with type error.
type iqError struct {
	Condition string
}

func (e *iqError) Error() string { return "XMPP error: " + e.Condition }

// newID returns a random stanza id.
func newID() string {
	b := make([]byte, 9)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
