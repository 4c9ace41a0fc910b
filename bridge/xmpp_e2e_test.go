package bridge_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestXMPPDirectMessageBothWays: bob writes to alice over XMPP and alice
// gets a proper Matrix DM: invited by bob's ghost with is_direct, already
// joined, the room in her m.direct under the ghost, the text right. Her
// answer reaches bob's XMPP client once, with the Matrix event id as
// origin-id.
func TestXMPPDirectMessageBothWays(t *testing.T) {
	x := newXMPPStack(t)
	ghost := x.ghostID()
	ctx := context.Background()

	room, msg, _ := x.bobOpens("hello alice, it's bob on XMPP")
	if msg.Sender != ghost {
		t.Errorf("message sent by %s, want bob's ghost %s", msg.Sender, ghost)
	}
	invite := x.roomEvent(room, func(evt *event.Event) bool {
		return evt.Type == event.StateMember && evt.GetStateKey() == string(x.alice.UserID) &&
			evt.Content.AsMember().Membership == event.MembershipInvite
	})
	if invite.Sender != ghost || !invite.Content.AsMember().IsDirect {
		t.Errorf("alice's invite: sender %s, is_direct %v; want %s, true", invite.Sender, invite.Content.AsMember().IsDirect, ghost)
	}
	joined, err := x.alice.JoinedRooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(joined.JoinedRooms, room) {
		t.Errorf("alice is not joined to the portal %s", room)
	}
	tesths.WaitFor(t, xeWait, "the portal in m.direct under "+string(ghost), func() (bool, error) {
		return slices.Contains(tesths.DirectContent(t, x.alice)[ghost], room), nil
	})

	sent := x.aliceSays(room, "hi bob, alice from Matrix")
	got := x.bobGets(testxmpp.WithBody)
	if got.Body != "hi bob, alice from Matrix" || got.OriginID != string(sent) {
		t.Errorf("bob got %+v, want the text with origin-id %s", got, sent)
	}
	if got.From == "" || got.Type != "chat" {
		t.Errorf("bob got a %q message from %q, want a chat message from alice", got.Type, got.From)
	}
	x.noMoreFor("alice's message", withBodyText("hi bob, alice from Matrix"))

	// What an operator's scrape shows after this conversation.
	// The send's counter moves when the connector's result comes back,
	// which can be just after bob has the message.
	m := waitMetric(t, "http://"+x.br.MetricsAddr().String()+"/metrics", "dmbridge_events_total",
		labels{"direction": "matrix_to_remote", "kind": "send_message", "result": "ok"}, 1)
	wantValue(t, m, "dmbridge_events_total", labels{"direction": "remote_to_matrix", "kind": "message", "result": "ok"}, 1)
	wantValue(t, m, "dmbridge_bridge_latency_seconds", labels{"direction": "remote_to_matrix", "kind": "message"}, 1)
	wantValue(t, m, "dmbridge_homeserver_requests_total", labels{"class": "createRoom"}, 1)
	wantValue(t, m, "dmbridge_connector_connected", labels{"connector": "xmpp"}, 1)
	wantValue(t, m, "dmbridge_portals", nil, 1)
}

// TestXMPPNothingLostWhileDown: messages bob sends while the connector is
// stopped, and while the bridge is stopped, all show up once and in order
// when it is back; after a Prosody restart the connector reconnects by
// itself.
func TestXMPPNothingLostWhileDown(t *testing.T) {
	x, room := newXMPPChat(t, "before")
	want := []string{"before"}

	x.stopConnector()
	for _, body := range []string{"connector down 1", "connector down 2", "connector down 3"} {
		x.bobSays(body)
	}
	x.startConnector()
	want = append(want, "connector down 1", "connector down 2", "connector down 3")
	x.waitBodies(room, want)

	x.stopBridge()
	for _, body := range []string{"bridge down 1", "bridge down 2", "bridge down 3"} {
		x.bobSays(body)
	}
	// Let the connector take them in (and fail to reach the bridge) while
	// the bridge is really down.
	time.Sleep(time.Second)
	x.startBridge()
	want = append(want, "bridge down 1", "bridge down 2", "bridge down 3")
	x.waitBodies(room, want)

	x.xmpp.Restart(t)
	// Bob's own client lost its stream too; the connector is not told
	// anything and has to notice and reconnect on its own.
	x.bob = x.xmpp.Dial(t, "bob", xeBobPW)
	x.bobSays("after the prosody restart")
	want = append(want, "after the prosody restart")
	x.waitBodies(room, want)
	x.waitLoginState("connected")

	// And the way back works over the new stream.
	sent := x.aliceSays(room, "still there?")
	if got := x.bobGets(testxmpp.WithBody); got.Body != "still there?" || got.OriginID != string(sent) {
		t.Errorf("bob got %+v after the restart", got)
	}
}

// TestXMPPEditsReactionsRetractions: corrections, reactions and
// retractions from bob show on Matrix; alice's edits, reactions and
// redactions reach bob's client.
func TestXMPPEditsReactionsRetractions(t *testing.T) {
	x := newXMPPStack(t)
	ctx := context.Background()
	ghost := x.ghostID()
	room, firstEvt, first := x.bobOpens("helo")

	// XMPP → Matrix: a correction (XEP-0308) is an m.replace edit.
	x.bob.Correct(t, x.login, first, "hello")
	edit := x.roomEvent(room, func(evt *event.Event) bool {
		rel, target, _ := relation(evt)
		return evt.Type == event.EventMessage && rel == "m.replace" && target == string(firstEvt.ID)
	})
	if nc := edit.Content.AsMessage().NewContent; nc == nil || nc.Body != "hello" || edit.Sender != ghost {
		t.Errorf("edit from %s with new content %+v, want %q from the ghost", edit.Sender, nc, "hello")
	}

	// A reaction (XEP-0444) is an m.reaction annotation by the ghost.
	x.bob.React(t, x.login, first, "👍")
	reaction := x.roomEvent(room, func(evt *event.Event) bool {
		rel, target, key := relation(evt)
		return evt.Type == event.EventReaction && rel == "m.annotation" && target == string(firstEvt.ID) && key == "👍"
	})
	if reaction.Sender != ghost {
		t.Errorf("reaction sent by %s, want the ghost", reaction.Sender)
	}
	// A key too long to be an emoji is not bridged, and alice is told so:
	// a reply from the ghost to the message bob reacted to.
	x.bob.React(t, x.login, first, "👍", strings.Repeat("z", 300))
	standIn := x.roomEvent(room, func(evt *event.Event) bool {
		mc := evt.Content.AsMessage()
		return evt.Type == event.EventMessage && mc.RelatesTo != nil && mc.RelatesTo.GetReplyTo() == firstEvt.ID &&
			strings.Contains(mc.Body, "A reaction to this message was not bridged")
	})
	if standIn.Sender != ghost {
		t.Errorf("the stand-in for the long reaction sent by %s, want the ghost", standIn.Sender)
	}

	// A retraction (XEP-0424) redacts the message.
	second := x.bobSays("oops, wrong chat")
	secondEvt := x.waitMessage(room, "oops, wrong chat")
	x.bob.Retract(t, x.login, second)
	x.roomEvent(room, func(evt *event.Event) bool {
		return evt.Type == event.EventRedaction && redacts(evt) == secondEvt.ID
	})

	// Matrix → XMPP: alice's edit arrives as a correction of her message.
	sent := x.aliceSays(room, "see you tomorow")
	orig := x.bobGets(withBodyText("see you tomorow"))
	// SetEdit makes m.new_content of this and the "* " fallback body.
	editContent := &event.MessageEventContent{MsgType: event.MsgText, Body: "see you tomorrow"}
	editContent.SetEdit(sent)
	x.aliceSends(room, editContent)
	corr := x.bobGets(testxmpp.WithBody)
	if corr.Body != "see you tomorrow" || corr.Replace != orig.ID {
		t.Errorf("bob got %+v, want a correction of %s to %q", corr, orig.ID, "see you tomorrow")
	}

	// Alice's reaction to bob's message names bob's message id.
	if _, err := x.alice.SendReaction(ctx, room, firstEvt.ID, "🎉"); err != nil {
		t.Fatal(err)
	}
	react := x.bobGets(func(m *testxmpp.Message) bool { return m.ReactionsTo != "" })
	if react.ReactionsTo != first || !slices.Equal(react.Reactions, []string{"🎉"}) {
		t.Errorf("bob got reactions %+v, want [🎉] on %s", react, first)
	}

	// Alice deletes her message: bob's client is told to retract it. The
	// redaction reaches the bridge through alice's /sync (double_puppet.sync),
	// not from the test.
	x.waitFollowing(x.alice.UserID)
	if _, err := x.alice.RedactEvent(ctx, room, sent); err != nil {
		t.Fatal(err)
	}
	retract := x.bobGets(func(m *testxmpp.Message) bool { return m.Retract != "" })
	if retract.Retract != orig.ID {
		t.Errorf("bob got a retraction of %s, want %s", retract.Retract, orig.ID)
	}
}

// redacts is the event a redaction removes, in either room version's place.
func redacts(evt *event.Event) id.EventID {
	if evt.Redacts != "" {
		return evt.Redacts
	}
	if c := evt.Content.AsRedaction(); c != nil {
		return c.Redacts
	}
	return ""
}

// TestXMPPTypingAndReadMarkers: bob typing shows as the ghost typing in
// alice's room, and bob's displayed marker as the ghost's read receipt.
// The other way, alice typing and reading bob's message reach bob's client
// as chat states and a displayed marker: Dendrite does not push them, so
// they come through alice's /sync (double_puppet.sync).
func TestXMPPTypingAndReadMarkers(t *testing.T) {
	x := newXMPPStack(t)
	room, hiEvt, hi := x.bobOpens("hi")
	ghost := x.ghostID()
	ctx := context.Background()

	x.waitFollowing(x.alice.UserID)
	if _, err := x.alice.UserTyping(ctx, room, true, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	x.bobGets(func(m *testxmpp.Message) bool { return m.ChatState == "composing" })
	if _, err := x.alice.UserTyping(ctx, room, false, 0); err != nil {
		t.Fatal(err)
	}
	x.bobGets(func(m *testxmpp.Message) bool { return m.ChatState == "paused" })
	if err := x.alice.SendReceipt(ctx, room, hiEvt.ID, event.ReceiptTypeRead, nil); err != nil {
		t.Fatal(err)
	}
	if got := x.bobGets(func(m *testxmpp.Message) bool { return m.Displayed != "" }); got.Displayed != hi {
		t.Errorf("bob's client got a displayed marker for %s, want his message %s", got.Displayed, hi)
	}

	x.bob.ChatState(t, x.login, "composing")
	typing := x.roomEvent(room, func(evt *event.Event) bool {
		return evt.Type == event.EphemeralEventTyping && slices.Contains(evt.Content.AsTyping().UserIDs, ghost)
	})
	x.bob.ChatState(t, x.login, "paused")
	x.roomEventAfter(room, typing, func(evt *event.Event) bool {
		return evt.Type == event.EphemeralEventTyping && !slices.Contains(evt.Content.AsTyping().UserIDs, ghost)
	})

	sent := x.aliceSays(room, "did you read this?")
	got := x.bobGets(withBodyText("did you read this?"))
	x.bob.Displayed(t, x.login, got.ID)
	x.roomEvent(room, func(evt *event.Event) bool {
		return evt.Type == event.EphemeralEventReceipt && readBy(evt, sent, ghost)
	})
}

// TestXMPPVCardRenameFollows: bob renames himself in his vCard and the
// ghost's name in the portal follows.
func TestXMPPVCardRenameFollows(t *testing.T) {
	x := newXMPPStack(t)
	ghost := x.ghostID()
	// alice starts the chat from Matrix, which adds bob to her roster;
	// then the connector accepts bob's subscription request and asks back
	// (mutual subscription), and from then on Prosody notifies alice's
	// account of bob's profile changes (PEP).
	started := x.createDM(x.alice, ghost)
	room := x.portal()
	if room != started {
		t.Fatalf("portal %s, want the DM alice started %s", room, started)
	}
	x.bob.Subscribe(t, x.login)
	x.bobSays("hi, I'm bob")
	x.waitMessage(room, "hi, I'm bob")

	x.bob.SetVCard(t, "Bob Builder", nil, "")
	member := x.roomEvent(room, func(evt *event.Event) bool {
		return evt.Type == event.StateMember && evt.GetStateKey() == string(ghost) &&
			evt.Content.AsMember().Displayname == "Bob Builder"
	}).Content.AsMember()
	if member.Membership != event.MembershipJoin {
		t.Errorf("ghost's member event after the rename has membership %q", member.Membership)
	}
	profile, err := x.alice.GetProfile(context.Background(), ghost)
	if err != nil {
		t.Fatal(err)
	}
	if profile.DisplayName != "Bob Builder" {
		t.Errorf("ghost's global displayname is %q", profile.DisplayName)
	}
}
