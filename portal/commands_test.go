package portal

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// userMessage stores the user's text message in the portal's room as the
// intake would and returns its row.
func (u *unit) userMessage(t *testing.T, roomID id.RoomID, eventID id.EventID, text string) *database.MXEvent {
	t.Helper()
	return u.userEvent(t, roomID, eventID, map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": text}})
}

// userEvent is userMessage with any event: fields gives its type and
// content (and redacts, for a redaction).
func (u *unit) userEvent(t *testing.T, roomID id.RoomID, eventID id.EventID, fields map[string]any) *database.MXEvent {
	t.Helper()
	ctx := context.Background()
	evt := map[string]any{"event_id": eventID, "room_id": roomID, "sender": unitUser, "origin_server_ts": 1}
	maps.Copy(evt, fields)
	raw, _ := json.Marshal(evt)
	if _, err := u.db.MXEvent.InsertMany(ctx, []*database.NewMXEvent{{EventID: eventID, RoomID: roomID, Data: raw}}); err != nil {
		t.Fatal(err)
	}
	rows, err := u.db.MXEvent.Pending(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.EventID == eventID {
			return r
		}
	}
	t.Fatalf("%s not pending", eventID)
	return nil
}

func (u *unit) pendingEvents(t *testing.T) []id.EventID {
	t.Helper()
	rows, err := u.db.MXEvent.Pending(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var ids []id.EventID
	for _, r := range rows {
		ids = append(ids, r.EventID)
	}
	return ids
}

// TestUnitCommandSentDirectly: in a room with no command waiting, the
// user's message goes to the network without being stored as a command;
// its result and the event's done flag are stored together. A send that
// fails is stored for its retry, and a room with a stored command keeps
// its order: the next message waits behind it.
func TestUnitCommandSentDirectly(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	fail := true
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if cmd.Text == "second" && fail {
			return nil, &connector.Error{Code: "M_UNKNOWN", Message: "down", Retryable: true}
		}
		return &connector.Result{ID: "r-" + cmd.Text, TS: 5}, nil
	}
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$first", "first")); err != nil {
		t.Fatal(err)
	}
	if msg, err := u.db.Message.GetByMXID(ctx, "$first"); err != nil || msg == nil || msg.RemoteID != "r-first" {
		t.Fatalf("mapping of the sent message = %+v, %v", msg, err)
	}
	if waiting, _ := u.db.PendingCm.ByRoom(ctx, p.RoomID); len(waiting) != 0 {
		t.Fatalf("a sent command was left stored: %+v", waiting)
	}
	if pending := u.pendingEvents(t); len(pending) != 0 {
		t.Fatalf("events still pending after their result: %v", pending)
	}

	// A failed send: stored with its attempt counted, the event handled.
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$second", "second")); err != nil {
		t.Fatal(err)
	}
	waiting, err := u.db.PendingCm.ByRoom(ctx, p.RoomID)
	if err != nil || len(waiting) != 1 || waiting[0].Txn != "$second" || waiting[0].Attempts != 1 {
		t.Fatalf("after a failed send, stored commands = %+v, %v; want $second with 1 attempt", waiting, err)
	}
	if pending := u.pendingEvents(t); len(pending) != 0 {
		t.Fatalf("the failed event is not handled: %v", pending)
	}
	// The next message must not overtake it: it is stored behind it, and
	// both go out in order once the network answers.
	fail = false
	u.conn.ops = nil
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$third", "third")); err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ mxid, remote string }{{"$second", "r-second"}, {"$third", "r-third"}} {
		if msg, err := u.db.Message.GetByMXID(ctx, id.EventID(want.mxid)); err != nil || msg == nil || msg.RemoteID != want.remote {
			t.Fatalf("mapping of %s = %+v, %v", want.mxid, msg, err)
		}
	}
	if !slices.Equal(u.conn.ops, []string{connector.OpSendMessage, connector.OpSendMessage}) {
		t.Fatalf("ops after the retry: %v", u.conn.ops)
	}
}

// TestUnitDirectSendWhosePortalWent: the portal is cleaned up while a
// message sent directly is with the connector. The network has it and no
// room is left to map it to: no mapping is stored, nothing stays queued,
// and the Matrix event is handled all the same (not applied again, sent
// twice, at the next start).
func TestUnitDirectSendWhosePortalWent(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if err := u.db.Portal.Delete(ctx, p.PortalKey); err != nil {
			t.Error(err)
		}
		return &connector.Result{ID: "r-gone", TS: 5}, nil
	}
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$gone", "gone")); err != nil {
		t.Fatal(err)
	}
	if msg, err := u.db.Message.GetByMXID(ctx, "$gone"); err != nil || msg != nil {
		t.Errorf("mapping of a message whose portal went = %+v, %v; want none", msg, err)
	}
	if waiting, _ := u.db.PendingCm.ByRoom(ctx, p.RoomID); len(waiting) != 0 {
		t.Errorf("commands left queued: %+v", waiting)
	}
	if pending := u.pendingEvents(t); len(pending) != 0 {
		t.Errorf("events still pending: %v", pending)
	}
}

// TestUnitEchoOfDirectSend: the echo of a command sent without being
// stored can overtake its result; the Matrix event, still pending, is what
// recognises it, and the result's write afterwards does not fail on the
// mapping the echo made.
func TestUnitEchoOfDirectSend(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	row := u.userMessage(t, p.RoomID, "$mine", "mine")
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		// The connector's echo is applied before the bridge stores the answer.
		u.hs.Reset()
		u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "r9", Text: "mine", Txn: cmd.Txn,
			Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
		if calls := u.hs.Calls(); len(calls) != 0 {
			t.Errorf("the echo made Matrix calls: %+v", calls)
		}
		return &connector.Result{ID: "r9", TS: 5}, nil
	}
	if err := u.m.handleMatrix(ctx, row); err != nil {
		t.Fatal(err)
	}
	if msg, err := u.db.Message.GetByMXID(ctx, "$mine"); err != nil || msg == nil || msg.RemoteID != "r9" {
		t.Fatalf("mapping = %+v, %v", msg, err)
	}
	if pending := u.pendingEvents(t); len(pending) != 0 {
		t.Fatalf("event still pending: %v", pending)
	}
}

// TestUnitEchoOnlyInItsOwnRoom: a txn naming another room's Matrix event
// is not an echo of this chat: nothing is mapped into that room.
func TestUnitEchoOnlyInItsOwnRoom(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	u.remote(t, fromBob("m1", "hello"))
	u.userMessage(t, "!someone-elses:x", "$theirs", "not yours")
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "r5", Text: "claims to be an echo", Txn: "$theirs",
		Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
	if msg, err := u.db.Message.GetByMXID(ctx, "$theirs"); err != nil || msg != nil {
		t.Fatalf("another room's event was mapped: %+v, %v", msg, err)
	}
}

// TestUnitUndeliveredNoticeBeforeDone: when the user's event cannot reach
// the network (an edit the network cannot carry, a command the connector
// refuses for good), the user is told before the event or command is
// dropped, so a crash in between cannot leave them without a word; and the
// notice is named after the event, so handling it again after such a crash
// shows the notice once.
func TestUnitUndeliveredNoticeBeforeDone(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if cmd.Text == "refused" {
			return nil, &connector.Error{Code: "M_FORBIDDEN", Message: "blocked"}
		}
		return &connector.Result{ID: "r-" + cmd.Text, TS: 5}, nil
	}
	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$first", "first")); err != nil {
		t.Fatal(err)
	}
	// At each notice: is what it is about still there to be handled again?
	var stillThere []bool
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.Method == "SendMessageEvent" && c.Content["msgtype"] == "m.notice" {
			pc, err := u.db.PendingCm.Get(ctx, "$refused")
			pending := u.pendingEvents(t)
			stillThere = append(stillThere, slices.Contains(pending, "$edit") || slices.Contains(pending, "$redact") || (err == nil && pc != nil))
		}
		return nil
	}
	notices := func() (bodies []string) {
		for _, raw := range u.hs.Timeline(p.RoomID) {
			var evt struct {
				Content map[string]any `json:"content"`
			}
			_ = json.Unmarshal(raw, &evt)
			if evt.Content["msgtype"] == "m.notice" {
				bodies = append(bodies, evt.Content["body"].(string))
			}
		}
		return bodies
	}
	edit := map[string]any{"msgtype": "m.text", "body": "* fixed", "m.new_content": map[string]any{"msgtype": "m.text", "body": "fixed"},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$first"}}
	var bobs id.EventID
	for _, c := range u.sends() {
		if c.Content["body"] == "hello" {
			bobs = c.EventID
		}
	}
	// Handled twice: the second time is the replay a kill after the notice
	// leaves behind.
	twice := func(row *database.MXEvent) {
		t.Helper()
		for try := range 2 {
			if try == 1 {
				if _, err := u.db.Exec(ctx, "UPDATE mx_event SET done = false WHERE seq = $1", row.Seq); err != nil {
					t.Fatal(err)
				}
			}
			if err := u.m.handleMatrix(ctx, row); err != nil {
				t.Fatal(err)
			}
		}
		if pending := u.pendingEvents(t); len(pending) != 0 {
			t.Fatalf("the refused event is not handled: %v", pending)
		}
	}
	twice(u.userEvent(t, p.RoomID, "$edit", map[string]any{"type": "m.room.message", "content": edit}))
	// Removing the contact's message: the bridge deletes only the user's own.
	twice(u.userEvent(t, p.RoomID, "$redact", map[string]any{"type": "m.room.redaction", "redacts": bobs,
		"content": map[string]any{"redacts": bobs}}))
	if got := notices(); len(got) != 2 || !strings.Contains(got[0], "does not support editing messages") ||
		!strings.Contains(got[1], "removed on Matrix only") {
		t.Fatalf("notices after an unsupported edit and a refused removal, each handled twice = %q, want one each", got)
	}

	if err := u.m.handleMatrix(ctx, u.userMessage(t, p.RoomID, "$refused", "refused")); err != nil {
		t.Fatal(err)
	}
	if pc, err := u.db.PendingCm.Get(ctx, "$refused"); err != nil || pc != nil {
		t.Fatalf("the refused command is still stored: %+v, %v", pc, err)
	}
	if got := notices(); len(got) != 3 || !strings.Contains(got[2], "blocked") {
		t.Fatalf("notices after a refused command = %q, want the refusal's", got)
	}
	if !slices.Equal(stillThere, []bool{true, true, true, true, true}) {
		t.Errorf("at each notice, was its event or command still there to handle again: %v, want all true", stillThere)
	}
}

// TestUnitParkedEventToldBeforeParked: a connector event the homeserver
// refuses for good, and a Matrix event that does not parse, are parked,
// and the user is told before they are: at the notice the event is still
// pending, so a kill right after it leaves the event to be handled again
// (and the notice, named after it, shows once).
func TestUnitParkedEventToldBeforeParked(t *testing.T) {
	u, in := pipelineUnit(t, testdb.SQLite(t))
	ctx := context.Background()
	p := u.portal(t)
	done := func(query string, args ...any) bool {
		var n int
		if err := u.db.QueryRow(ctx, query, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	var parkedAtNotice []bool
	u.hs.Fail = func(c fakematrix.Call) error {
		switch {
		case c.Method != "SendMessageEvent":
		case c.Content["body"] == "doomed":
			return fakematrix.Forbidden("refused")
		case c.Content["msgtype"] == "m.notice":
			if repliesTo(c.Content) == "$bad" {
				parkedAtNotice = append(parkedAtNotice, done("SELECT COUNT(*) FROM mx_event WHERE event_id = '$bad' AND done"))
			} else {
				parkedAtNotice = append(parkedAtNotice, done("SELECT COUNT(*) FROM inbox WHERE connector_id = $1 AND seq = 1 AND done", unitConnID))
			}
		}
		return nil
	}
	queueEntries(t, u, in, bobEvent("doomed")).wait(t)
	if !done("SELECT COUNT(*) FROM inbox WHERE connector_id = $1 AND seq = 1 AND done AND error <> ''", unitConnID) {
		t.Fatal("the refused event is not parked")
	}

	row := u.userEvent(t, p.RoomID, "$bad", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": 5}})
	if err := u.m.handleMatrix(ctx, row); err != nil {
		t.Fatal(err)
	}
	if !done("SELECT COUNT(*) FROM mx_event WHERE event_id = '$bad' AND done AND error <> ''") {
		t.Fatal("the unparsable Matrix event is not parked")
	}
	if !slices.Equal(parkedAtNotice, []bool{false, false}) {
		t.Errorf("at each notice, was its event already parked: %v, want two notices, each before the park", parkedAtNotice)
	}
}

// TestUnitDamagedCommandIsReported: a stored command whose data no longer
// parses (only damage to the database does that) is dropped with a notice
// in the room, not in silence, and the commands behind it still go out.
func TestUnitDamagedCommandIsReported(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	for i, data := range []string{"{damaged", `{"login":"l1","text":"next"}`} {
		if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: fmt.Sprintf("$c%d", i), ConnectorID: unitConnID,
			PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(data), MXSeq: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return &connector.Result{ID: "r-" + cmd.Text, TS: 5}, nil
	}
	u.m.flushCommands(ctx, p.RoomID)
	var notice map[string]any
	for _, c := range u.hs.Calls("SendMessageEvent") {
		if c.Content["msgtype"] == "m.notice" {
			notice = c.Content
		}
	}
	if notice == nil || !strings.Contains(notice["body"].(string), "was not delivered: the bridge's stored copy of it is damaged") {
		t.Errorf("notice about the damaged command = %v", notice)
	}
	if left, _ := u.db.PendingCm.ByRoom(ctx, p.RoomID); len(left) != 0 {
		t.Errorf("commands left stored: %+v", left)
	}
	if !slices.Equal(u.conn.ops, []string{connector.OpSendMessage}) {
		t.Errorf("ops sent = %v, want the command behind the damaged one", u.conn.ops)
	}
}

// TestUnitFailedCommandNoticeNamesTheMessage: a message the network refuses
// is answered in the room by a notice that replies to it (so the user's
// client shows which message) and gives the network's reason without the
// protocol's error code.
func TestUnitFailedCommandNoticeNamesTheMessage(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	if err := u.db.PendingCm.Insert(ctx, &database.PendingCommand{Txn: "$refused", ConnectorID: unitConnID,
		PortalKey: p.PortalKey, RoomID: p.RoomID, Op: connector.OpSendMessage, Data: []byte(`{"login":"l1","text":"hi"}`), MXSeq: 1}); err != nil {
		t.Fatal(err)
	}
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return nil, &connector.Error{Code: connector.ErrForbidden, Message: "the contact blocked you"}
	}
	u.m.flushCommands(ctx, p.RoomID)
	var notice map[string]any
	for _, c := range u.hs.Calls("SendMessageEvent") {
		if c.Content["msgtype"] == "m.notice" {
			notice = c.Content
		}
	}
	if notice == nil {
		t.Fatal("no notice about the refused message")
	}
	if body := notice["body"].(string); body != "⚠️ Your message was not delivered: the contact blocked you" {
		t.Errorf("notice body %q", body)
	}
	if repliesTo(notice) != "$refused" {
		t.Errorf("notice relates to %v, want a reply to $refused", notice["m.relates_to"])
	}
}

// TestUnitEventNouns: notices name what the user or the contact did in
// words, never by event id or protocol kind.
func TestUnitEventNouns(t *testing.T) {
	for data, want := range map[string]string{
		`{"type":"m.room.message","content":{"msgtype":"m.text","body":"x"}}`:                                    "message",
		`{"type":"m.room.message","content":{"msgtype":"m.image","body":"x"}}`:                                   "file",
		`{"type":"m.room.message","content":{"msgtype":"m.text","m.relates_to":{"rel_type":"m.replace"}}}`:       "edit",
		`{"type":"m.reaction","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$x","key":"👍"}}}`: "reaction",
		`{"type":"m.room.redaction","redacts":"$x"}`:                                                             "deletion",
		`{"type":"m.room.encrypted","content":{}}`:                                                               "message",
		`{"type":"m.room.topic","content":{}}`:                                                                   "event",
		`not json`:                                                                                               "message",
	} {
		if got := mxEventNoun([]byte(data)); got != want {
			t.Errorf("mxEventNoun(%s) = %q, want %q", data, got, want)
		}
	}
	if got := kindNoun(connector.KindReactionRemove); got != "The removal of a reaction" {
		t.Errorf("kindNoun(reaction_remove) = %q", got)
	}
}

// TestUnitUserMessageKeepsTheNetworksReason: when the network says why it
// cannot find a contact ("not an XMPP address"), the user reads that, not a
// generic sentence; a reason of any length stays bounded.
func TestUnitUserMessageKeepsTheNetworksReason(t *testing.T) {
	why := &connector.Error{Code: connector.ErrNotFound, Message: `"foo" is not an XMPP address (user@server)`}
	if got := UserMessage(why); got != why.Message {
		t.Errorf("UserMessage = %q, want the network's reason", got)
	}
	if got := UserMessage(&connector.Error{Code: connector.ErrNotFound}); got != "the network does not know that contact" {
		t.Errorf("UserMessage without a reason = %q", got)
	}
	long := &connector.Error{Code: connector.ErrNotFound, Message: strings.Repeat("é", 5000)}
	if got := UserMessage(long); utf8.RuneCountInString(got) != maxReasonRunes+1 || !strings.HasSuffix(got, "…") {
		t.Errorf("a 5,000-character reason became %d characters", utf8.RuneCountInString(got))
	}
}

// repliesTo is the event a notice's content replies to, or "".
func repliesTo(content map[string]any) string {
	rel, _ := content["m.relates_to"].(map[string]any)
	reply, _ := rel["m.in_reply_to"].(map[string]any)
	to, _ := reply["event_id"].(string)
	return to
}

// TestUnitNetworkNameIsBounded: the network's name comes from the
// connector's hello and goes into notices and alerts; a huge one is cut.
func TestUnitNetworkNameIsBounded(t *testing.T) {
	u, _ := newUnitPortal(t)
	if got := u.m.networkName(unitConnID); got != "TestNet" {
		t.Errorf("networkName = %q, want the hello's TestNet", got)
	}
	u.conn.network = strings.Repeat("N", 100_000)
	if got := u.m.networkName(unitConnID); utf8.RuneCountInString(got) != maxNetworkNameRunes+1 {
		t.Errorf("a 100,000-character network name gave %d characters", utf8.RuneCountInString(got))
	}
}
