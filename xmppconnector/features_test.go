package xmppconnector

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

func kind(k string) func(*connector.Event) bool {
	return func(ev *connector.Event) bool { return ev.Kind == k }
}

func TestIncomingReactionsRetractionsRepliesTyping(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	x := bob.SendChat(t, e.alice, "react to me", "")
	msg := e.bridge.waitEvent(t, "the message", isMessage("react to me"))

	bob.ChatState(t, e.alice, "composing")
	e.bridge.waitFor(t, "typing", func(_ []connector.Event, eph []connector.Ephemeral) bool {
		return slices.ContainsFunc(eph, func(p connector.Ephemeral) bool {
			return p.Kind == connector.KindTyping && p.Typing && p.Sender.ID == e.bob && p.Chat.ID == e.bob
		})
	})

	bob.React(t, e.alice, x, "👍", "🎉")
	bob.React(t, e.alice, x, "👍")
	e.bridge.waitEvent(t, "reaction removed", kind(connector.KindReactionRemove))
	adds := e.bridge.matching(kind(connector.KindReaction))
	removes := e.bridge.matching(kind(connector.KindReactionRemove))
	if len(adds) != 2 || len(removes) != 1 || removes[0].Key != "🎉" || removes[0].Target != msg.ID {
		t.Errorf("reactions bridged as adds %v and removes %v, want 👍 🎉 added and 🎉 removed on %s", adds, removes, msg.ID)
	}
	for _, a := range adds {
		if a.Target != msg.ID || a.Sender.ID != e.bob {
			t.Errorf("reaction %s, want target %s from bob", eventString(a), msg.ID)
		}
	}

	bob.Reply(t, e.alice, x, "a reply")
	reply := e.bridge.waitEvent(t, "the reply", isMessage("a reply"))
	if reply.ReplyTo != msg.ID {
		t.Errorf("reply_to = %q, want %s", reply.ReplyTo, msg.ID)
	}

	bob.Retract(t, e.alice, x)
	del := e.bridge.waitEvent(t, "the retraction", kind(connector.KindDelete))
	if del.Target != msg.ID || del.Sender.ID != e.bob {
		t.Errorf("delete = %s, want target %s", eventString(del), msg.ID)
	}
	// The retraction's fallback body must not show up as a message.
	if n := len(e.bridge.matching(kind(connector.KindMessage))); n != 2 {
		t.Errorf("%d messages bridged, want 2:\n%s", n, e.bridge.dump())
	}
}

// TestOversizedReactionSetIsBounded: a contact's reaction set of 500
// keys on one message becomes maxReactionsPerSender reactions, the first
// ones of the set, not 500 Matrix events, and bob's reply to the message
// says that reactions were left out, once; the next, smaller set is still
// bridged as removes against what was kept.
func TestOversizedReactionSetIsBounded(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	x := bob.SendChat(t, e.alice, "react to me a lot", "")
	msg := e.bridge.waitEvent(t, "the message", isMessage("react to me a lot"))
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprintf("r%03d", i)
	}
	isStandIn := func(ev *connector.Event) bool {
		return ev.Kind == connector.KindMessage && strings.HasPrefix(ev.Text, reactionStandInPrefix)
	}
	bob.React(t, e.alice, x, keys...)
	standIn := e.bridge.waitEvent(t, "the stand-in for the reactions left out", isStandIn)
	if standIn.ReplyTo != msg.ID || standIn.Sender == nil || standIn.Sender.ID != e.bob ||
		!strings.Contains(standIn.Text, fmt.Sprint(maxReactionsPerSender)) {
		t.Fatalf("the stand-in is not bob's reply to %q naming the bound: %+v", msg.ID, standIn)
	}
	bob.React(t, e.alice, x, keys[:maxReactionsPerSender+1]...)
	bob.React(t, e.alice, x, keys[0])
	e.bridge.waitEvent(t, "reactions removed", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindReactionRemove && ev.Key == keys[maxReactionsPerSender-1]
	})
	var added []string
	for _, a := range e.bridge.matching(kind(connector.KindReaction)) {
		if a.Target == msg.ID {
			added = append(added, a.Key)
		}
	}
	if !slices.Equal(added, keys[:maxReactionsPerSender]) {
		t.Errorf("%d reactions bridged (%v), want the first %d of the set", len(added), added, maxReactionsPerSender)
	}
	if n := len(e.bridge.matching(kind(connector.KindReactionRemove))); n != maxReactionsPerSender-1 {
		t.Errorf("%d removes bridged, want %d", n, maxReactionsPerSender-1)
	}
	if n := len(e.bridge.matching(isStandIn)); n != 1 {
		t.Errorf("%d stand-ins for the reactions left out, want 1", n)
	}
}

// On real Prosody: a reaction whose key is too long to be an emoji is
// left out, and the user was never told. Now bob's reply to the message he
// reacted to says that a reaction was not bridged, once: his next set,
// which still holds the long key beside a thumbs-up, bridges the thumbs-up
// and no second stand-in; a set without the long key removes nothing the
// user saw but the thumbs-up.
func TestLongReactionBecomesStandIn(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	x := bob.SendChat(t, e.alice, "react to me at length", "")
	msg := e.bridge.waitEvent(t, "the message", isMessage("react to me at length"))
	long := strings.Repeat("x", maxReactionKeyBytes+1)
	isStandIn := func(ev *connector.Event) bool {
		return ev.Kind == connector.KindMessage && strings.HasPrefix(ev.Text, reactionStandInPrefix)
	}
	bob.React(t, e.alice, x, long)
	standIn := e.bridge.waitEvent(t, "the stand-in for the long reaction", isStandIn)
	if standIn.ReplyTo != msg.ID || standIn.Sender == nil || standIn.Sender.ID != e.bob || standIn.Chat == nil || standIn.Chat.ID != e.bob {
		t.Fatalf("the stand-in is not bob's reply to %q in his chat: %+v", msg.ID, standIn)
	}
	bob.React(t, e.alice, x, long, "👍")
	e.bridge.waitEvent(t, "the thumbs-up", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindReaction && ev.Key == "👍" && ev.Target == msg.ID
	})
	bob.React(t, e.alice, x)
	e.bridge.waitEvent(t, "the thumbs-up removed", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindReactionRemove && ev.Key == "👍"
	})
	if n := len(e.bridge.matching(isStandIn)); n != 1 {
		t.Errorf("%d stand-ins for one long reaction, want 1", n)
	}
	for _, ev := range e.bridge.matching(func(ev *connector.Event) bool {
		return ev.Kind == connector.KindReaction || ev.Kind == connector.KindReactionRemove
	}) {
		if ev.Key != "👍" {
			t.Errorf("a reaction event with key %.20q… was bridged", ev.Key)
		}
	}
}

// On real Prosody: alice's other client reacts to bob's message with a key
// too long to bridge; she is told in the chat (a stand-in from her), and
// her next reaction from Matrix sends bob a set without the mark the
// connector keeps that she was told.
func TestOwnLongReactionFromAnotherClient(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	x := bob.SendChat(t, e.alice, "react to me elsewhere", "")
	msg := e.bridge.waitEvent(t, "the message", isMessage("react to me elsewhere"))
	phone := e.xmpp.Dial(t, "alice", alicePW)
	long := strings.Repeat("y", maxReactionKeyBytes+1)
	phone.React(t, e.bob, x, long)
	if got := bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.ReactionsTo != "" }); len(got.Reactions) != 1 {
		t.Fatalf("bob got %d reactions from alice's phone, want 1", len(got.Reactions))
	}
	standIn := e.bridge.waitEvent(t, "the stand-in for alice's long reaction", func(ev *connector.Event) bool {
		return ev.Kind == connector.KindMessage && strings.HasPrefix(ev.Text, reactionStandInPrefix)
	})
	if standIn.ReplyTo != msg.ID || standIn.Sender == nil || standIn.Sender.ID != e.alice {
		t.Fatalf("the stand-in is not alice's reply to %q: %+v", msg.ID, standIn)
	}
	if _, err := e.bridge.command(t, connector.OpReact, &connector.Command{Login: e.alice, Chat: e.bobChat(),
		Txn: "$r", Target: msg.ID, Key: "👍"}); err != nil {
		t.Fatal(err)
	}
	got := bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.ReactionsTo != "" })
	if !slices.Equal(got.Reactions, []string{"👍"}) {
		t.Fatalf("bob got the set %.40q from the bridge, want only the thumbs-up", got.Reactions)
	}
}

func TestOutgoingCommands(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	chat := e.bobChat()
	run := func(op string, cmd connector.Command) *connector.Result {
		t.Helper()
		cmd.Login, cmd.Chat = e.alice, chat
		res, err := e.bridge.command(t, op, &cmd)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return res
	}
	x := bob.SendChat(t, e.alice, "from bob", "")
	bobMsg := e.bridge.waitEvent(t, "bob's message", isMessage("from bob"))

	run(connector.OpSendMessage, connector.Command{Txn: "$reply", Text: "replying", ReplyTo: bobMsg.ID})
	if got := bob.Next(t, waitLong, testxmpp.WithBody); got.ReplyTo != x || got.Body != "replying" {
		t.Errorf("reply arrived as %+v, want reply to %s", got, x)
	}
	run(connector.OpEditMessage, connector.Command{Txn: "$edit", Target: "$reply", Text: "replying (edited)"})
	if got := bob.Next(t, waitLong, testxmpp.WithBody); got.Replace != "$reply" || got.Body != "replying (edited)" || got.OriginID != "$edit" {
		t.Errorf("edit arrived as %+v, want a correction of $reply", got)
	}
	run(connector.OpReact, connector.Command{Txn: "$r1", Target: bobMsg.ID, Key: "👍"})
	run(connector.OpReact, connector.Command{Txn: "$r2", Target: bobMsg.ID, Key: "❤️"})
	run(connector.OpUnreact, connector.Command{Txn: "$r3", Target: bobMsg.ID, Key: "👍"})
	var sets [][]string
	for range 3 {
		got := bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.ReactionsTo != "" })
		if got.ReactionsTo != x {
			t.Errorf("reactions for %q, want bob's id %s", got.ReactionsTo, x)
		}
		sets = append(sets, got.Reactions)
	}
	if len(sets[0]) != 1 || len(sets[1]) != 2 || len(sets[2]) != 1 || sets[2][0] != "❤️" {
		t.Errorf("reaction sets %q, want [👍] [👍 ❤️] [❤️]", sets)
	}
	run(connector.OpMarkRead, connector.Command{UpTo: bobMsg.ID})
	if got := bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.Displayed != "" }); got.Displayed != x {
		t.Errorf("displayed marker for %q, want %s", got.Displayed, x)
	}
	run(connector.OpSetTyping, connector.Command{Typing: true})
	bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.ChatState == "composing" })
	run(connector.OpDeleteMessage, connector.Command{Txn: "$del", Target: "$reply"})
	if got := bob.Next(t, waitLong, func(m *testxmpp.Message) bool { return m.Retract != "" }); got.Retract != "$reply" {
		t.Errorf("retraction of %q, want $reply", got.Retract)
	}
}

func TestOwnSendComesBackWithTxn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	stop := e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	bob.SendChat(t, e.alice, "cursor", "")
	e.bridge.waitEvent(t, "a message to set the cursor", isMessage("cursor"))
	cmd := &connector.Command{Login: e.alice, Chat: e.bobChat(), Txn: "$mine", Text: "from matrix"}
	if _, err := e.bridge.command(t, connector.OpSendMessage, cmd); err != nil {
		t.Fatal(err)
	}
	bob.Next(t, waitLong, testxmpp.WithBody)
	stop()
	// The archive copy of the send is caught up on the next start.
	e.start(t)
	echo := e.bridge.waitEvent(t, "the archive copy of our send", isMessage("from matrix"))
	if echo.Txn != "$mine" || echo.ID != "$mine" || !echo.Sender.IsMe {
		t.Errorf("echo = %s, want txn and id $mine from me", eventString(echo))
	}
}

func TestResolveIdentifierWithAvatar(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	photo := []byte("\x89PNG\r\n\x1a\n not really a png")
	bob.SetVCard(t, "Bob", photo, "image/png")

	res, err := e.bridge.command(t, connector.OpResolveIdentifier, &connector.Command{Login: e.alice, Identifier: " xmpp:" + e.bob + "?message", Create: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Chat == nil || res.Chat.ID != e.bob || res.Chat.With != e.bob || res.Contact == nil || res.Contact.Name != "Bob" {
		t.Fatalf("resolve_identifier = %+v, want bob's dm and contact", res)
	}
	sum := sha1.Sum(photo)
	if res.Contact.Avatar == nil || res.Contact.Avatar.ID != hex.EncodeToString(sum[:]) {
		t.Fatalf("avatar = %+v, want id = SHA-1 of the photo", res.Contact.Avatar)
	}
	resp, err := http.Get(res.Contact.Avatar.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != string(photo) || resp.Header.Get("Content-Type") != "image/png" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("avatar URL answered %d %q (nosniff %q) with %d bytes, want the photo", resp.StatusCode,
			resp.Header.Get("Content-Type"), resp.Header.Get("X-Content-Type-Options"), len(body))
	}

	// A "photo" that is a web page, whatever its vCard says, is no picture.
	bob.SetVCard(t, "Bob", []byte("<!DOCTYPE html><html><script>alert(1)</script></html>"), "text/html")
	got, err := e.bridge.command(t, connector.OpGetContact, &connector.Command{Login: e.alice, ID: e.bob})
	if err != nil || got.Contact == nil || got.Contact.Name != "Bob" || got.Contact.Avatar != nil {
		t.Errorf("get_contact with a web page for a photo = %+v, %v; want bob without an avatar", got.Contact, err)
	}

	if _, err := e.bridge.command(t, connector.OpResolveIdentifier, &connector.Command{Login: e.alice, Identifier: "not an address"}); err == nil {
		t.Error("resolve_identifier accepted a non-address")
	}
}

func TestPresence(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	e.addToRoster(t, e.bob)
	bob.Subscribe(t, e.alice)
	presence := func(state string) func([]connector.Event, []connector.Ephemeral) bool {
		return func(_ []connector.Event, eph []connector.Ephemeral) bool {
			return slices.ContainsFunc(eph, func(p connector.Ephemeral) bool {
				return p.Kind == connector.KindPresence && p.Contact == e.bob && p.Presence == state
			})
		}
	}
	e.bridge.waitFor(t, "bob online", presence(connector.PresenceOnline))
	bob.Presence(t, "away", "lunch")
	e.bridge.waitFor(t, "bob away", presence(connector.PresenceUnavailable))
	bob.Close()
	e.bridge.waitFor(t, "bob offline", presence(connector.PresenceOffline))
}

func TestBackfill(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	for _, text := range []string{"one", "two", "three"} {
		bob.SendChat(t, e.alice, text, "")
		e.bridge.waitEvent(t, text, isMessage(text))
	}
	res, err := e.bridge.command(t, connector.OpBackfill, &connector.Command{
		Login: e.alice, Chat: e.bobChat(), Limit: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Messages) != 2 || res.Messages[0].Text != "two" || res.Messages[1].Text != "three" || !res.HasMore {
		t.Fatalf("backfill = %+v, want two and three, oldest first, with more", res)
	}
	live := e.bridge.matching(isMessage("two"))
	if res.Messages[0].ID != live[0].ID {
		t.Errorf("backfilled id %s, live id %s: want the same", res.Messages[0].ID, live[0].ID)
	}
	before := res.Messages[0].ID
	older, err := e.bridge.command(t, connector.OpBackfill, &connector.Command{
		Login: e.alice, Chat: e.bobChat(), Limit: 10, Before: &before,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(older.Messages) != 1 || older.Messages[0].Text != "one" || older.HasMore {
		t.Errorf("older page = %+v, want just one, no more", older)
	}
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.cfg.Accounts[0].Password = "wrong"
	c, err := New(t.Context(), e.cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	// t.Context ends before cleanups run, which stops Run.
	go func() { done <- c.Run(t.Context()) }()
	ev := e.bridge.waitEvent(t, "bad credentials", isLogin(connector.LoginBadCredentials))
	if ev.Login != e.alice {
		t.Errorf("login event for %q", ev.Login)
	}
	t.Cleanup(func() {
		<-done
		_ = c.Close()
	})
}

// TestSubscriptionOnlyFromRosterContacts: a stranger asking for alice's
// presence gets no answer (the request stays pending for the user), while
// a contact alice added is accepted.
func TestSubscriptionOnlyFromRosterContacts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.xmpp.Register(t, "carol", "carol-pw")
	e.start(t)
	carol := e.xmpp.Dial(t, "carol", "carol-pw")
	carol.Subscribe(t, e.alice)
	// The account handles stanzas in order: once carol's later message is
	// bridged, her request was dealt with.
	carol.SendChat(t, e.alice, "after my request", "")
	e.bridge.waitEvent(t, "carol's message", isMessage("after my request"))

	bob := e.xmpp.Dial(t, "bob", bobPW)
	e.addToRoster(t, e.bob)
	bob.Subscribe(t, e.alice)
	deadline := time.Now().Add(waitLong)
	for !bob.ApprovedBy(e.alice) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !bob.ApprovedBy(e.alice) {
		t.Error("bob, in alice's roster, was not approved")
	}
	if carol.ApprovedBy(e.alice) {
		t.Error("carol, a stranger, was approved")
	}
}

// TestListChats: list_chats names the peers of the newest archived
// messages, newest first, each once, at most limit.
func TestListChats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.xmpp.Register(t, "carol", "carol-pw")
	e.start(t)
	bob := e.xmpp.Dial(t, "bob", bobPW)
	carol := e.xmpp.Dial(t, "carol", "carol-pw")
	for _, step := range []struct {
		from *testxmpp.Client
		text string
	}{{bob, "b1"}, {carol, "c1"}, {bob, "b2"}} {
		step.from.SendChat(t, e.alice, step.text, "")
		e.bridge.waitEvent(t, step.text, isMessage(step.text))
	}
	carolJID := e.xmpp.JID("carol")
	res, err := e.bridge.command(t, connector.OpListChats, &connector.Command{Login: e.alice, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	want := []connector.Chat{{ID: e.bob, Type: connector.ChatTypeDM, With: e.bob}, {ID: carolJID, Type: connector.ChatTypeDM, With: carolJID}}
	if !slices.Equal(res.Chats, want) {
		t.Errorf("list_chats = %+v, want %+v", res.Chats, want)
	}
	res, err = e.bridge.command(t, connector.OpListChats, &connector.Command{Login: e.alice, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Chats, want[:1]) {
		t.Errorf("list_chats with limit 1 = %+v, want %+v", res.Chats, want[:1])
	}
}
