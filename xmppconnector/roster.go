package xmppconnector

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"time"

	"mellium.im/xmpp/jid"
)

type rosterGetIQ struct {
	iqOut
	Query struct {
		XMLName xml.Name `xml:"jabber:iq:roster query"`
	}
}

// inRoster reports whether who is in the account's roster: someone the user
// added (from any client, or by starting a chat from Matrix, which asks for
// their presence) rather than a stranger who merely sent a request. The
// roster is read from the server each time: subscription requests are rare,
// and the server's roster is the one every client of the account shares.
// It is read as it arrives, keeping only who's item: a roster may be larger
// than xmpp.max_stanza_size (streamed.go).
func (a *account) inRoster(ctx context.Context, conn *xmppConn, who string) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req := rosterGetIQ{iqOut: newRequest("get", "")}
	var contact bool
	err := conn.requestStreamed(rctx, req, req.ID, func(d *xml.Decoder) error {
		// Read to its end, not just to who's item: the answer is whole
		// only then.
		for {
			tok, err := d.Token()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if item, ok := tok.(xml.StartElement); ok && item.Name.Local == "item" && item.Name.Space == rosterNS {
				if mine, ok := rosterContact(item, who); mine {
					contact = ok
				}
			}
		}
	})
	if err != nil {
		return false, fmt.Errorf("reading the roster: %w", err)
	}
	return contact, nil
}

const rosterNS = "jabber:iq:roster"

// rosterContact reports whether item is who's, and if so whether it is a
// contact: an item the server keeps only for a request of theirs still
// pending (subscription none, no ask of ours) is not.
func rosterContact(item xml.StartElement, who string) (mine, contact bool) {
	var sub, ask string
	for _, at := range item.Attr {
		switch at.Name.Local {
		case "jid":
			j, err := jid.Parse(at.Value)
			if err != nil || j.Bare().String() != who {
				return false, false
			}
			mine = true
		case "subscription":
			sub = at.Value
		case "ask":
			ask = at.Value
		}
	}
	return mine, mine && (sub == "to" || sub == "both" || sub == "from" || ask == "subscribe")
}
