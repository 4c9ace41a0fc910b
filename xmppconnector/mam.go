package xmppconnector

import (
	"context"
	"encoding/xml"
	"fmt"
)

// mamItem is one archived message (XEP-0313 result).
type mamItem struct {
	id    string // the archive id: our stanza-id for the message
	delay *delayEl
	msg   *message
	// tooLarge: the item was over xmpp.max_stanza_size, and msg is its
	// stand-in (see oversized.go).
	tooLarge bool
}

// archiveQuery selects a page of the account's archive.
type archiveQuery struct {
	with   string  // bare JID of the other party; "" for all chats
	after  string  // page forward after this archive id
	before *string // page backward before this id; "" means from the end
	max    int
}

type archivePage struct {
	items    []mamItem
	complete bool   // no more pages in the paging direction
	first    string // the first and last archive ids of the page
	last     string
	// cut: the connection ended at the page's last item, which is over
	// xmpp.max_stanza_size; the page holds the items up to it.
	cut bool
}

type formField struct {
	Var   string `xml:"var,attr"`
	Type  string `xml:"type,attr,omitempty"`
	Value string `xml:"value"`
}

type mamQueryIQ struct {
	iqOut
	Query struct {
		XMLName xml.Name `xml:"urn:xmpp:mam:2 query"`
		QueryID string   `xml:"queryid,attr"`
		Form    struct {
			XMLName xml.Name    `xml:"jabber:x:data x"`
			Type    string      `xml:"type,attr"`
			Fields  []formField `xml:"field"`
		}
		Set struct {
			XMLName xml.Name `xml:"http://jabber.org/protocol/rsm set"`
			Max     int      `xml:"max"`
			After   string   `xml:"after,omitempty"`
			Before  *string  `xml:"before"`
		}
	}
}

type mamFin struct {
	XMLName  xml.Name `xml:"urn:xmpp:mam:2 fin"`
	Complete bool     `xml:"complete,attr"`
	Set      struct {
		First string `xml:"first"`
		Last  string `xml:"last"`
	} `xml:"http://jabber.org/protocol/rsm set"`
}

// collectArchived files an archive result under its running query; false
// if it belongs to none (then it is not ours to trust either).
func (c *xmppConn) collectArchived(m *message) bool {
	// Results of our own archive come from our bare JID, which mellium
	// turns into an empty from; anyone else's "result" is a forgery.
	if m.From != "" && m.From != c.bare {
		return false
	}
	c.mamMu.Lock()
	defer c.mamMu.Unlock()
	items, ok := c.mam[m.Result.QueryID]
	if !ok || m.Result.Forwarded.Message == nil {
		return ok
	}
	*items = append(*items, mamItem{id: m.Result.ID, delay: m.Result.Forwarded.Delay, msg: m.Result.Forwarded.Message})
	return true
}

// queryArchive fetches one page. The server sends the results as
// messages before it answers the IQ, so by the time the answer is here the
// read loop has collected all of them.
func (c *xmppConn) queryArchive(ctx context.Context, q archiveQuery) (archivePage, error) {
	var iq mamQueryIQ
	iq.iqOut = newRequest("set", "")
	iq.Query.QueryID = newID()
	iq.Query.Form.Type = "submit"
	iq.Query.Form.Fields = []formField{{Var: "FORM_TYPE", Type: "hidden", Value: nsMAM}}
	if q.with != "" {
		iq.Query.Form.Fields = append(iq.Query.Form.Fields, formField{Var: "with", Value: q.with})
	}
	iq.Query.Set.Max = q.max
	iq.Query.Set.After = q.after
	iq.Query.Set.Before = q.before

	var items []mamItem
	c.mamMu.Lock()
	c.mam[iq.Query.QueryID] = &items
	c.mamMu.Unlock()
	defer func() {
		c.mamMu.Lock()
		delete(c.mam, iq.Query.QueryID)
		c.mamMu.Unlock()
	}()

	var fin mamFin
	if err := c.request(ctx, iq, &fin); err != nil {
		if page, cut := c.cutPage(&items); cut {
			return page, nil
		}
		return archivePage{}, fmt.Errorf("archive query: %w", err)
	}
	c.mamMu.Lock()
	page := archivePage{items: items, complete: fin.Complete, first: fin.Set.First, last: fin.Set.Last}
	c.mamMu.Unlock()
	return page, nil
}

// cutPage returns the page of a query that ended in an error right after
// an item over the limit, as a query ends when that item ends the
// connection: the items up to it, all the server sent before it, in the
// archive's order. The read loop files that item before the connection
// ends (see oversized), so a query failed by that end finds it there.
// Whatever else failed the query, the items up to the oversized one are
// whole and in order, so the page is good to bridge and move past.
func (c *xmppConn) cutPage(got *[]mamItem) (archivePage, bool) {
	c.mamMu.Lock()
	items := *got
	c.mamMu.Unlock()
	n := len(items)
	if n == 0 || !items[n-1].tooLarge {
		return archivePage{}, false
	}
	return archivePage{items: items, first: items[0].id, last: items[n-1].id, cut: true}, true
}
