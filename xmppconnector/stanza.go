package xmppconnector

import (
	"encoding/xml"
	"time"
)

// Namespaces of the XEPs the connector maps.
const (
	nsClient     = "jabber:client"
	nsSID        = "urn:xmpp:sid:0"                        // XEP-0359
	nsCarbons    = "urn:xmpp:carbons:2"                    // XEP-0280
	nsForward    = "urn:xmpp:forward:0"                    // XEP-0297
	nsDelay      = "urn:xmpp:delay"                        // XEP-0203
	nsMAM        = "urn:xmpp:mam:2"                        // XEP-0313
	nsRSM        = "http://jabber.org/protocol/rsm"        // XEP-0059
	nsDataForm   = "jabber:x:data"                         // XEP-0004
	nsCorrect    = "urn:xmpp:message-correct:0"            // XEP-0308
	nsRetract    = "urn:xmpp:message-retract:1"            // XEP-0424
	nsReactions  = "urn:xmpp:reactions:0"                  // XEP-0444
	nsReply      = "urn:xmpp:reply:0"                      // XEP-0461
	nsFallback   = "urn:xmpp:fallback:0"                   // XEP-0428
	nsChatStates = "http://jabber.org/protocol/chatstates" // XEP-0085
	nsMarkers    = "urn:xmpp:chat-markers:0"               // XEP-0333
	nsHints      = "urn:xmpp:hints"                        // XEP-0334
	nsOOB        = "jabber:x:oob"                          // XEP-0066
	nsMUCUser    = "http://jabber.org/protocol/muc#user"   // XEP-0045
	nsVCard      = "vcard-temp"                            // XEP-0054
	nsVCardUpd   = "vcard-temp:x:update"                   // XEP-0153
	nsCaps       = "http://jabber.org/protocol/caps"       // XEP-0115
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info" // XEP-0030
	nsPubSubEv   = "http://jabber.org/protocol/pubsub#event"
	nsPing       = "urn:xmpp:ping"
	nsNick       = "http://jabber.org/protocol/nick"
	nsVCard4     = "urn:xmpp:vcard4"
	nsAvatarMeta = "urn:xmpp:avatar:metadata"
)

// idEl is any element whose payload is an id attribute.
type idEl struct {
	ID string `xml:"id,attr"`
}

// stanzaIDEl is a XEP-0359 stanza-id; only ours (by = our bare JID) counts,
// anything else may be forged by the sender.
type stanzaIDEl struct {
	ID string `xml:"id,attr"`
	By string `xml:"by,attr"`
}

type delayEl struct {
	Stamp string `xml:"stamp,attr"`
	// From is who added the delay: a server that held the message, or the
	// sending client (which can write anything).
	From string `xml:"from,attr"`
}

func (d *delayEl) time() (time.Time, bool) {
	if d == nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, d.Stamp)
	return t, err == nil
}

type forwardedEl struct {
	Delay   *delayEl `xml:"urn:xmpp:delay delay"`
	Message *message `xml:"jabber:client message"`
}

type carbonEl struct {
	Forwarded forwardedEl `xml:"urn:xmpp:forward:0 forwarded"`
}

type mamResultEl struct {
	QueryID   string      `xml:"queryid,attr"`
	ID        string      `xml:"id,attr"`
	Forwarded forwardedEl `xml:"urn:xmpp:forward:0 forwarded"`
}

type reactionsEl struct {
	ID        string   `xml:"id,attr"`
	Reactions []string `xml:"reaction"`
}

type replyEl struct {
	To string `xml:"to,attr"`
	ID string `xml:"id,attr"`
}

type fallbackEl struct {
	For    string `xml:"for,attr"`
	Bodies []struct {
		Start *int `xml:"start,attr"`
		End   *int `xml:"end,attr"`
	} `xml:"body"`
}

type oobEl struct {
	URL  string `xml:"url"`
	Desc string `xml:"desc"`
}

type pubsubEventEl struct {
	Items struct {
		Node string `xml:"node,attr"`
	} `xml:"items"`
}

// anyEl records the name of an element nothing else decoded.
type anyEl struct {
	XMLName xml.Name
}

// message is a message stanza with every payload the connector reads. It
// is also the one nested in carbons and archive results.
type message struct {
	XMLName xml.Name
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	ID      string `xml:"id,attr"`
	Type    string `xml:"type,attr"`

	Body      string       `xml:"body"`
	OriginID  *idEl        `xml:"urn:xmpp:sid:0 origin-id"`
	StanzaIDs []stanzaIDEl `xml:"urn:xmpp:sid:0 stanza-id"`
	// Delay is the message's last delay element: a sender may write any,
	// and a server appends its own (see offline.go).
	Delay     lastDelayEl    `xml:"urn:xmpp:delay delay"`
	Replace   *idEl          `xml:"urn:xmpp:message-correct:0 replace"`
	Retract   *idEl          `xml:"urn:xmpp:message-retract:1 retract"`
	Reactions *reactionsEl   `xml:"urn:xmpp:reactions:0 reactions"`
	Reply     *replyEl       `xml:"urn:xmpp:reply:0 reply"`
	Fallbacks []fallbackEl   `xml:"urn:xmpp:fallback:0 fallback"`
	Displayed *idEl          `xml:"urn:xmpp:chat-markers:0 displayed"`
	OOB       *oobEl         `xml:"jabber:x:oob x"`
	MUCUser   *anyEl         `xml:"http://jabber.org/protocol/muc#user x"`
	Received  *carbonEl      `xml:"urn:xmpp:carbons:2 received"`
	Sent      *carbonEl      `xml:"urn:xmpp:carbons:2 sent"`
	Result    *mamResultEl   `xml:"urn:xmpp:mam:2 result"`
	Event     *pubsubEventEl `xml:"http://jabber.org/protocol/pubsub#event event"`
	Other     []anyEl        `xml:",any"`

	// stored is set by the read loop on a message that arrived in the
	// offline flood (see offline.go): not XML, never decoded.
	stored bool
	// tooLarge is set by the read loop on a message over
	// xmpp.max_stanza_size: it holds only the addresses (see oversized.go).
	tooLarge bool
}

// lastDelay is the message's last delay element, nil if it has none: the
// one a server that held the message appended.
func (m *message) lastDelay() *delayEl { return m.Delay.el }

// lastDelayEl keeps the last of a message's delay elements, whole.
// Decoded into a plain *delayEl, a later delay only overwrote the
// attributes it has, so a stamp of one could go with the from of another;
// and a slice of them all would grow with every one a sender writes.
type lastDelayEl struct {
	el *delayEl
}

func (l *lastDelayEl) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	var el delayEl
	if err := d.DecodeElement(&el, &start); err != nil {
		return err
	}
	l.el = &el
	return nil
}

// chatState returns the XEP-0085 state the message carries, if any.
func (m *message) chatState() string {
	for _, el := range m.Other {
		if el.XMLName.Space == nsChatStates {
			return el.XMLName.Local
		}
	}
	return ""
}

// stanzaID returns the archive id our server gave the message.
func (m *message) stanzaID(ourBare string) string {
	for _, s := range m.StanzaIDs {
		if s.By == ourBare {
			return s.ID
		}
	}
	return ""
}

// presence is a presence stanza.
type presence struct {
	XMLName xml.Name
	From    string `xml:"from,attr"`
	To      string `xml:"to,attr"`
	Type    string `xml:"type,attr"`
	Show    string `xml:"show"`
	Status  string `xml:"status"`
	MUCUser *anyEl `xml:"http://jabber.org/protocol/muc#user x"`
	Update  *struct {
		Photo *string `xml:"photo"`
	} `xml:"vcard-temp:x:update x"`
}

// iqOut is the envelope of every IQ the connector sends, requests and
// answers alike; each one embeds it and adds its payload. A request
// without a recipient goes to our own account, so an empty to is left out.
type iqOut struct {
	XMLName xml.Name `xml:"iq"`
	ID      string   `xml:"id,attr"`
	To      string   `xml:"to,attr,omitempty"`
	Type    string   `xml:"type,attr"`
}

// newRequest starts an IQ of type get or set with a fresh id.
func newRequest(typ, to string) iqOut {
	return iqOut{ID: newID(), To: to, Type: typ}
}

// iqHeader is the top of an IQ answer.
type iqHeader struct {
	XMLName xml.Name
	ID      string         `xml:"id,attr"`
	Type    string         `xml:"type,attr"`
	From    string         `xml:"from,attr"`
	Error   *stanzaErrorEl `xml:"error"`
	// Raw keeps the payload for a second decoding once the caller says
	// what it is.
	Raw []rawEl `xml:",any"`
}

// stanzaErrorEl is the error element of an error stanza. It keeps the
// first defined condition only, so that an error with any number of
// children costs nothing to read (an answer read as it arrives has no
// whole-stanza limit on its markup: streamed.go).
type stanzaErrorEl struct {
	cond string
}

const nsStanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"

func (e *stanzaErrorEl) UnmarshalXML(d *xml.Decoder, _ xml.StartElement) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if e.cond == "" && t.Name.Space == nsStanzas {
				e.cond = t.Name.Local
			}
			if err := d.Skip(); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// condition names the first defined condition of an error IQ.
func (h *iqHeader) condition() string { return h.Error.condition() }

// condition names the first defined condition; "" for no error at all.
func (e *stanzaErrorEl) condition() string {
	switch {
	case e == nil:
		return ""
	case e.cond != "":
		return e.cond
	}
	return "undefined-condition"
}
