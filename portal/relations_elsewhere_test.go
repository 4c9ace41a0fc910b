package portal

import (
	"context"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// movedUnit is a unit whose portal has bob's message m1 ("see you
// tomorow") in its room, and has then moved to another room, as it does
// when the user upgrades the DM (followUpgrade); it returns the unit, the
// old room and m1's event there. The ghost cannot read the old room any
// more: the quotes of m1 fall back to a link.
func movedUnit(t *testing.T) (*unit, id.RoomID, id.EventID) {
	t.Helper()
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", "see you tomorow"))
	p := u.portal(t)
	first, err := u.db.Message.GetPart(context.Background(), p.PortalKey, "m1", 0)
	if err != nil || first == nil {
		t.Fatalf("m1 not mapped: %v", err)
	}
	if err = u.db.Portal.SetRoom(context.Background(), p.PortalKey, "!new:x"); err != nil {
		t.Fatal(err)
	}
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Method == "GetEvent" || c.RoomID == p.RoomID {
			return fakematrix.Forbidden("not in the room")
		}
		return nil
	}
	u.hs.Reset()
	return u, p.RoomID, first.MXID
}

// bobOn is bob's event of kind about m1.
func bobOn(kind, evID string) *connector.Event {
	ev := fromBob(evID, "")
	ev.Kind, ev.Target, ev.UpTo = kind, "m1", "m1"
	return ev
}

// TestEditElsewhereUnreadableQuotesLink: bob corrects his message from
// before the upgrade, which the ghost can no longer read. The correction
// is a message of its own in the new room, with no relation to the old
// room's event: it says it edits a message from before the upgrade and
// links to it.
func TestEditElsewhereUnreadableQuotesLink(t *testing.T) {
	u, old, m1 := movedUnit(t)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text = "see you tomorrow"
	u.remote(t, edit)
	sends := u.sends()
	if len(sends) != 1 || sends[0].RoomID != "!new:x" {
		t.Fatalf("sends = %+v, want one message in the new room", sends)
	}
	c := sends[0].Content
	if c["m.relates_to"] != nil || c["m.new_content"] != nil {
		t.Errorf("the correction relates to an event: %v", c)
	}
	body, _ := c["body"].(string)
	html, _ := c["formatted_body"].(string)
	if !strings.Contains(body, "before this room was upgraded") || !strings.HasSuffix(body, "\n\n* see you tomorrow") ||
		!strings.Contains(html, old.EventURI(m1).MatrixToURL()) {
		t.Errorf("correction body %q, html %q: want a quote that links to the message, then the new text", body, html)
	}
}

// TestReceiptElsewhereIsSkipped: bob reads up to a message of the room
// the DM was upgraded from. The ghost left that room, and this one has
// nothing to mark: no receipt is sent (one used to go into the new room,
// naming the old room's event), and the event is done.
func TestReceiptElsewhereIsSkipped(t *testing.T) {
	u, _, _ := movedUnit(t)
	u.remote(t, bobOn(connector.KindReadReceipt, "rr1"))
	if calls := u.hs.Calls("SendReceipt"); len(calls) != 0 {
		t.Errorf("receipts sent: %+v", calls)
	}
}

// TestDeleteElsewhereIsTold: bob deletes his message from before the
// upgrade. No redaction goes out (a homeserver refuses one naming another
// room's event); one notice in the new room says so, and the message is
// forgotten: the deletion again does nothing more.
func TestDeleteElsewhereIsTold(t *testing.T) {
	u, _, _ := movedUnit(t)
	u.remote(t, bobOn(connector.KindDelete, "d1"))
	u.remote(t, bobOn(connector.KindDelete, "d2"))
	if calls := u.hs.Calls("RedactEvent"); len(calls) != 0 {
		t.Errorf("redactions sent: %+v", calls)
	}
	sends := u.sends()
	if len(sends) != 1 || sends[0].RoomID != "!new:x" || sends[0].Content["msgtype"] != "m.notice" ||
		!strings.Contains(sends[0].Content["body"].(string), "deleted a message from before this room was upgraded") {
		t.Errorf("sends = %+v, want one notice in the new room", sends)
	}
}

// TestQuoteElsewhereOnFile: a reply to a message from before the upgrade
// that is a file without a caption gets the quote as its caption; the file
// keeps its name. A text keeps its text after the quote.
func TestQuoteElsewhereOnFile(t *testing.T) {
	u, _, _ := movedUnit(t)
	ctx := context.Background()
	p := u.portal(t)
	target, err := u.db.Message.GetPart(ctx, p.PortalKey, "m1", 0)
	if err != nil {
		t.Fatal(err)
	}
	const quote = "> In reply to a message from before this room was upgraded"
	file := &event.MessageEventContent{MsgType: event.MsgImage, Body: "cat.jpg", FileName: "cat.jpg"}
	u.m.quoteElsewhere(ctx, p, target, file, "In reply to")
	if file.Body != quote || file.FileName != "cat.jpg" || !strings.HasPrefix(file.FormattedBody, "<blockquote>") {
		t.Errorf("file after the quote: body %q, file name %q, html %q", file.Body, file.FileName, file.FormattedBody)
	}
	text := &event.MessageEventContent{MsgType: event.MsgText, Body: "a <b>"}
	u.m.quoteElsewhere(ctx, p, target, text, "In reply to")
	if text.Body != quote+"\n\na <b>" || !strings.HasSuffix(text.FormattedBody, "</blockquote>a &lt;b&gt;") {
		t.Errorf("text after the quote: body %q, html %q", text.Body, text.FormattedBody)
	}
}
