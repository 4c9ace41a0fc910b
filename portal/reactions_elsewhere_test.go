package portal

import (
	"context"
	"errors"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// bodiesWith are the bodies of the messages sent that contain text.
func (u *unit) bodiesWith(text string) []string {
	var out []string
	for _, c := range u.sends() {
		if body, _ := c.Content["body"].(string); strings.Contains(body, text) {
			out = append(out, body)
		}
	}
	return out
}

// TestReactionElsewhereRepeated: the connector hands bob's reaction to his
// message from before the upgrade over again, under the same id (the XMPP
// connector replays a reaction set after a crash and counts on the bridge
// to drop the repeats), when the homeserver no longer remembers the
// notice's transaction id. The user is told once, as a repeat of a
// reaction to a message of this room shows nothing new; so is the
// reaction's removal, repeated in the same way.
func TestReactionElsewhereRepeated(t *testing.T) {
	u, _, _ := movedUnit(t)
	for _, step := range []struct{ kind, id, told string }{
		{connector.KindReaction, "r1", "reacted 👍 to"},
		{connector.KindReactionRemove, "x1", "took back the 👍 reaction"},
	} {
		ev := bobOn(step.kind, step.id)
		ev.Key = "👍"
		u.remote(t, ev)
		u.hs.ForgetTransactions()
		u.remote(t, ev)
		if got := u.bodiesWith(step.told); len(got) != 1 {
			t.Errorf("notices of %s, handed over twice: %q, want one", step.kind, got)
		}
	}
}

// TestUserReactionOnStandInTakenBack: the user reacted on Matrix to the
// stand-in in the new room of bob's message from before the upgrade (the
// reaction reached the network as one to that message), then took it back
// on another device. The reaction is an event of the new room, which a
// redaction there removes: it must not stay on Matrix, told of as taken
// back in a notice, while the network has it no more.
func TestUserReactionOnStandInTakenBack(t *testing.T) {
	u, _, _ := movedUnit(t)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text = "see you tomorrow"
	u.remote(t, edit)
	ctx := context.Background()
	p := u.portal(t)
	standIn, err := u.db.Message.GetPart(ctx, p.PortalKey, "m1", 1)
	if err != nil || standIn == nil {
		t.Fatalf("no stand-in: %v", err)
	}
	// The user's reaction, as the homeserver has it and as the answer to
	// its react command stored it (relationDone).
	user, err := u.hs.DoublePuppet(unitUser, "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := user.SendMessageEvent(ctx, p.RoomID, event.EventReaction, &event.ReactionEventContent{
		RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: standIn.MXID, Key: "👍"}})
	if err != nil {
		t.Fatal(err)
	}
	if err = u.db.Reaction.Insert(ctx, &database.Reaction{PortalKey: p.PortalKey, TargetID: "m1",
		SenderID: unitLoginID, Key: "👍", MXID: resp.EventID}); err != nil {
		t.Fatal(err)
	}
	// The ghost still reads this room; only the old one is closed to it.
	u.hs.Fail = func(c fakematrix.Call) error {
		if c.RoomID != p.RoomID {
			return fakematrix.Forbidden("not in the room")
		}
		return nil
	}
	u.hs.Reset()
	unreact := bobOn(connector.KindReactionRemove, "x1")
	unreact.Sender, unreact.Key = &connector.Sender{IsMe: true}, "👍"
	u.remote(t, unreact)
	redactions := u.hs.Calls("RedactEvent")
	if len(redactions) != 1 || redactions[0].EventID != resp.EventID || redactions[0].RoomID != p.RoomID {
		t.Errorf("redactions = %+v, want the user's reaction %s in %s; notices: %q",
			redactions, resp.EventID, p.RoomID, u.bodiesWith("took back"))
	}
}

// TestStandInSentButNotStored: the bridge stops after m1's stand-in went
// out and before its row was stored (the event's transaction, marker
// cleared and row written, fails). Applied again, with a homeserver that
// does not remember the transaction id (Dendrite forgets a request cut
// off), the edit finds its stand-in in the room (its in-doubt marker
// says to look) and sends nothing: one stand-in, stored.
func TestStandInSentButNotStored(t *testing.T) {
	u, _, _ := movedUnit(t)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text, edit.Login = "see you tomorrow", unitLoginID
	edit.Chat = &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}
	crash := errors.New("killed")
	if err := u.m.applyRemote(context.Background(), unitConnID, edit, func(context.Context) error { return crash }); !errors.Is(err, crash) {
		t.Fatalf("first try: %v, want it cut off", err)
	}
	u.hs.ForgetTransactions()
	u.remote(t, edit)
	sends := u.sends()
	parts, err := u.db.Message.GetParts(context.Background(), u.portal(t).PortalKey, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if len(sends) != 1 || len(parts) != 2 || parts[1].MXID != sends[0].EventID {
		t.Errorf("%d sends, parts %+v: want one stand-in, stored", len(sends), parts)
	}
}
