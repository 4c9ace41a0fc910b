package portal

import (
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
)

// relationUnit is a portal with bob's message m1 and the user's own message
// m2 (from another device, posted by the double puppet), both mapped.
func relationUnit(t *testing.T) (u *unit, bobEvent, ownEvent id.EventID) {
	t.Helper()
	u = newUnit(t, true)
	u.remote(t, fromBob("m1", "from bob"))
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "m2", Text: "from me", Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
	sends := u.sends()
	if len(sends) != 2 || sends[1].User != unitUser {
		t.Fatalf("setup sends = %+v, want bob's by the ghost and the user's by the double puppet", sends)
	}
	u.hs.Reset()
	return u, sends[0].EventID, sends[1].EventID
}

func bobs(kind, remoteID, target string) *connector.Event {
	return &connector.Event{Kind: kind, ID: remoteID, Target: target, TS: 2000, Sender: &connector.Sender{ID: "bob"}}
}

// Edits, reactions and deletions map onto the events of their targets, as
// their sender.
func TestUnitRemoteRelationsMapToTargets(t *testing.T) {
	u, bobEvent, ownEvent := relationUnit(t)

	edit := bobs(connector.KindEdit, "e1", "m1")
	edit.Text = "from bob, fixed"
	u.remote(t, edit)
	sends := u.sends()
	if len(sends) != 1 || sends[0].User != unitGhost {
		t.Fatalf("edit sends = %+v", sends)
	}
	c := sends[0].Content
	if field(c, "m.relates_to", "rel_type") != "m.replace" || field(c, "m.relates_to", "event_id") != string(bobEvent) ||
		field(c, "m.new_content", "body") != "from bob, fixed" {
		t.Errorf("edit content = %v, want an m.replace of %s with the new text", c, bobEvent)
	}

	u.hs.Reset()
	react := bobs(connector.KindReaction, "x1", "m2")
	react.Key = "👍"
	u.remote(t, react)
	sends = u.sends()
	if len(sends) != 1 || sends[0].EventType != event.EventReaction || sends[0].User != unitGhost {
		t.Fatalf("reaction sends = %+v", sends)
	}
	if c := sends[0].Content; field(c, "m.relates_to", "event_id") != string(ownEvent) || field(c, "m.relates_to", "key") != "👍" ||
		field(c, "m.relates_to", "rel_type") != "m.annotation" {
		t.Errorf("reaction content = %v, want 👍 on %s", c, ownEvent)
	}
	reaction := sends[0].EventID

	// The reaction again (a replay) is not sent twice; its removal redacts it.
	u.hs.Reset()
	u.remote(t, react)
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Errorf("replayed reaction made calls: %+v", calls)
	}
	unreact := bobs(connector.KindReactionRemove, "x2", "m2")
	unreact.Key = "👍"
	u.remote(t, unreact)
	if r := u.hs.Calls("RedactEvent"); len(r) != 1 || r[0].EventID != reaction || r[0].User != unitGhost {
		t.Errorf("reaction removal = %+v, want the ghost redacting %s", r, reaction)
	}

	u.hs.Reset()
	u.remote(t, bobs(connector.KindDelete, "d1", "m1"))
	if r := u.hs.Calls("RedactEvent"); len(r) != 1 || r[0].EventID != bobEvent || r[0].User != unitGhost {
		t.Errorf("deletion = %+v, want the ghost redacting %s", r, bobEvent)
	}
	if parts, _ := u.db.Message.GetParts(t.Context(), u.portal(t).PortalKey, "m1"); len(parts) != 0 {
		t.Error("the deleted message is still mapped")
	}

	// Relations that point at nothing known are skipped, not failed.
	u.hs.Reset()
	u.remote(t, bobs(connector.KindEdit, "e2", "nope"))
	u.remote(t, bobs(connector.KindDelete, "d2", "nope"))
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Errorf("relations to unknown messages made calls: %+v", calls)
	}
}

// Neither side may change the other side's messages: the ghost could redact
// anything in the room, so the portal is all that keeps a contact away from
// the user's messages. A relation from someone who is not the contact is
// dropped too.
func TestUnitRelationOwnershipRefused(t *testing.T) {
	u, _, _ := relationUnit(t)
	edit := bobs(connector.KindEdit, "e1", "m2")
	edit.Text = "rewritten by bob"
	cases := []*connector.Event{
		edit,
		bobs(connector.KindDelete, "d1", "m2"),
		{Kind: connector.KindDelete, ID: "d2", Target: "m1", Sender: &connector.Sender{ID: unitLoginID, IsMe: true}},
		{Kind: connector.KindEdit, ID: "e3", Target: "m1", Text: "mine now", Sender: &connector.Sender{ID: unitLoginID, IsMe: true}},
		{Kind: connector.KindDelete, ID: "d3", Target: "m1", Sender: &connector.Sender{ID: "mallory"}},
		{Kind: connector.KindReaction, ID: "x3", Target: "m1", Key: "😈", Sender: &connector.Sender{ID: "mallory"}},
	}
	for _, ev := range cases {
		u.remote(t, ev)
	}
	if calls := u.hs.Calls(); len(calls) != 0 {
		t.Fatalf("refused relations made Matrix calls: %+v", calls)
	}
	for _, target := range []string{"m1", "m2"} {
		if parts, _ := u.db.Message.GetParts(t.Context(), u.portal(t).PortalKey, target); len(parts) != 1 {
			t.Errorf("message %s lost its mapping", target)
		}
	}
}

// The contact reading moves the ghost's receipt; the user reading on another
// device moves the user's, marked as the bridge's so it does not come back.
func TestUnitRemoteReadReceipts(t *testing.T) {
	u, bobEvent, ownEvent := relationUnit(t)
	u.remote(t, &connector.Event{Kind: connector.KindReadReceipt, ID: "r1", UpTo: "m2", Sender: &connector.Sender{ID: "bob"}})
	if r := u.hs.Calls("SendReceipt"); len(r) != 1 || r[0].User != unitGhost || r[0].EventID != ownEvent {
		t.Errorf("contact's receipt = %+v, want the ghost's on %s", r, ownEvent)
	}
	u.hs.Reset()
	u.remote(t, &connector.Event{Kind: connector.KindReadReceipt, ID: "r2", UpTo: "m1", Sender: &connector.Sender{ID: unitLoginID, IsMe: true}})
	r := u.hs.Calls("SendReceipt")
	if len(r) != 1 || r[0].User != unitUser || r[0].EventID != bobEvent || r[0].Content["fi.mau.double_puppet_source"] != "dmbridge" {
		t.Errorf("user's receipt = %+v, want the double puppet's on %s, marked", r, bobEvent)
	}
}
