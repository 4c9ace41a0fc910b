package xmppconnector

import (
	"context"
	"encoding/xml"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
)

type rosterGetIQ struct {
	iqOut
	Query struct {
		XMLName xml.Name `xml:"jabber:iq:roster query"`
	}
}

type rosterQuery struct {
	XMLName xml.Name `xml:"jabber:iq:roster query"`
	Items   []struct {
		JID          string `xml:"jid,attr"`
		Subscription string `xml:"subscription,attr"`
		Ask          string `xml:"ask,attr"`
	} `xml:"item"`
}

// inRoster reports whether who is in the account's roster: someone the user
// added (from any client, or by starting a chat from Matrix, which asks for
// their presence) rather than a stranger who merely sent a request. The
// roster is read from the server each time: subscription requests are rare,
// and the server's roster is the one every client of the account shares.
func (a *account) inRoster(ctx context.Context, conn *xmppConn, who string) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var q rosterQuery
	if err := conn.request(rctx, rosterGetIQ{iqOut: newRequest("get", "")}, &q); err != nil {
		return false, fmt.Errorf("reading the roster: %w", err)
	}
	for _, item := range q.Items {
		j, err := jid.Parse(item.JID)
		if err != nil || j.Bare().String() != who {
			continue
		}
		// An item the server keeps only for a request of theirs still
		// pending (subscription none, no ask of ours) is not a contact.
		return item.Subscription == "to" || item.Subscription == "both" || item.Subscription == "from" || item.Ask == "subscribe", nil
	}
	return false, nil
}
