package portal

import (
	"context"
	"strings"
	"sync"
	"testing"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
)

// kindsUnit is a unit portal whose network takes media and edits and whose
// commands are kept.
func kindsUnit(t *testing.T) (*unit, id.RoomID, func() []connector.Command) {
	t.Helper()
	u, p := newUnitPortal(t)
	u.conn.caps.Media, u.conn.caps.Edit = true, true
	var mu sync.Mutex
	var cmds []connector.Command
	u.conn.answer = func(op string, c *connector.Command) (*connector.Result, error) {
		mu.Lock()
		defer mu.Unlock()
		cmds = append(cmds, *c)
		return &connector.Result{ID: "r" + c.Txn}, nil
	}
	return u, p.RoomID, func() []connector.Command {
		mu.Lock()
		defer mu.Unlock()
		return append([]connector.Command(nil), cmds...)
	}
}

// TestStickerGoesAsImage: a sticker is an image without a msgtype; it
// reaches the network as the picture it is.
func TestStickerGoesAsImage(t *testing.T) {
	u, room, cmds := kindsUnit(t)
	up, err := u.hs.Ghost("@someone:x", false).UploadBytes(context.Background(), []byte("\x89PNG sticker"), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	u.handle(t, room, "$s", map[string]any{"type": "m.sticker", "content": map[string]any{
		"body": "a happy cat", "url": up.ContentURI.String(), "info": map[string]any{"mimetype": "image/png", "size": 12}}})
	got := cmds()
	if len(got) != 1 || len(got[0].Attachments) != 1 || string(got[0].Attachments[0].Data) != "\x89PNG sticker" || got[0].Attachments[0].MimeType != "image/png" {
		t.Fatalf("the network got %+v; want the sticker's picture", got)
	}
	if n := len(u.notices(t)); n != 0 {
		t.Errorf("%d notices for a sticker that went", n)
	}
}

// TestPollAndCallAreRefusedAloud: a poll and a call have nothing on the
// network to become, so the user is told instead of waiting for answers or
// a ring; what follows an invite, and a key verification request meant for
// the other user's client, end silently.
func TestPollAndCallAreRefusedAloud(t *testing.T) {
	u, room, cmds := kindsUnit(t)
	u.handle(t, room, "$poll", map[string]any{"type": "org.matrix.msc3381.poll.start", "content": map[string]any{
		"org.matrix.msc3381.poll.start": map[string]any{"question": map[string]any{"org.matrix.msc1767.text": "lunch?"}}}})
	u.handle(t, room, "$poll2", map[string]any{"type": "m.poll.start", "content": map[string]any{}})
	u.handle(t, room, "$call", map[string]any{"type": "m.call.invite", "content": map[string]any{"call_id": "c1", "version": "1"}})
	u.handle(t, room, "$cand", map[string]any{"type": "m.call.candidates", "content": map[string]any{"call_id": "c1", "version": "1"}})
	u.handle(t, room, "$verify", map[string]any{"type": "m.room.message", "content": map[string]any{
		"msgtype": "m.key.verification.request", "body": "@alice:x is requesting to verify your key", "from_device": "D", "methods": []string{"m.sas.v1"}}})
	if got := cmds(); len(got) != 0 {
		t.Errorf("the network got %+v, want nothing", got)
	}
	notices := u.notices(t)
	if len(notices) != 3 || !strings.Contains(notices[0], "Your poll was not delivered") ||
		!strings.Contains(notices[1], "Your poll was not delivered") || !strings.Contains(notices[2], "Calls are not bridged") {
		t.Errorf("notices = %q; want two about the polls and one about the call", notices)
	}
	if pending := u.pendingEvents(t); len(pending) != 0 {
		t.Errorf("events left unhandled: %v", pending)
	}
}

// TestEmoteEditStaysEmote: the edit of an emote goes out spelled as one.
func TestEmoteEditStaysEmote(t *testing.T) {
	u, room, cmds := kindsUnit(t)
	u.handle(t, room, "$em", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.emote", "body": "waves"}})
	u.handle(t, room, "$ed", map[string]any{"type": "m.room.message", "content": map[string]any{
		"msgtype": "m.emote", "body": "* waves back", "m.new_content": map[string]any{"msgtype": "m.emote", "body": "waves back"},
		"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": "$em"}}})
	got := cmds()
	if len(got) != 2 || got[0].Text != "/me waves" || got[1].Text != "/me waves back" || got[1].Target != "r$em" {
		t.Errorf("the network got %+v; want the emote and its edit, both as /me", got)
	}
}
