package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// fidRemoteID waits until the bridge has mapped the user's Matrix message to
// the network's message id, and returns that id.
func (s *stack) fidRemoteID(eventID id.EventID) string {
	s.t.Helper()
	var remote string
	tesths.WaitFor(s.t, 20*time.Second, "mapping of "+string(eventID), func() (bool, error) {
		msg, err := s.br.DB.Message.GetByMXID(context.Background(), eventID)
		if err != nil || msg == nil {
			return false, err
		}
		remote = msg.RemoteID
		return true, nil
	})
	return remote
}

// fidSendText sends text as alice and waits until the bridge has mapped it
// to the network's message id; it returns the event's id and that id.
func (s *stack) fidSendText(roomID id.RoomID, text string) (id.EventID, string) {
	s.t.Helper()
	resp, err := s.alice.SendText(context.Background(), roomID, text)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.EventID, s.fidRemoteID(resp.EventID)
}

func fidFromBob(kind, msgID string) *connector.Event {
	return &connector.Event{Kind: kind, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat(fidBob),
		Sender: &connector.Sender{ID: fidBob}, ID: msgID}
}

func TestFormattingBothWays(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m0", "hello")

	// Network → Matrix: html becomes formatted_body, text stays the body.
	ev := fidFromBob(connector.KindMessage, "m1")
	ev.Text, ev.HTML = "bold and plain", "<b>bold</b> and plain"
	msg := s.fidShown(f, roomID, ev)
	if msg.MsgType != event.MsgText || msg.Format != event.FormatHTML || msg.FormattedBody != "<b>bold</b> and plain" {
		t.Errorf("formatted message = %+v", msg)
	}
	// HTML alone: the plain body is derived from it by the format package.
	html := "<p>Hi <i>there</i></p><ul><li>one</li><li>two</li></ul>"
	ev = fidFromBob(connector.KindMessage, "m2")
	ev.HTML = html
	f.send(ev)
	got := s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
		return evt.Content.AsMessage().FormattedBody == html
	}).Content.AsMessage()
	if want := format.HTMLToText(html); got.Body != want || strings.Contains(got.Body, "<") {
		t.Errorf("plain fallback = %q, want %q", got.Body, want)
	}

	// Matrix → network: the HTML goes as html, a readable text beside it.
	cmd := s.fidSendFromMatrix(f, roomID, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "**strong** words", Format: event.FormatHTML, FormattedBody: "<strong>strong</strong> words",
	})
	if cmd.HTML != "<strong>strong</strong> words" || cmd.Text != "**strong** words" {
		t.Errorf("send_message text=%q html=%q", cmd.Text, cmd.HTML)
	}

	// A network without html gets the plain text only.
	caps := helloFor().Capabilities
	caps.Formats = []string{"plain"}
	f = s.fidConnect(fakeSetup{caps: &caps, store: f.store})
	cmd = s.fidSendFromMatrix(f, roomID, &event.MessageEventContent{
		MsgType: event.MsgText, Body: "*soft* <link>", Format: event.FormatHTML,
		FormattedBody: `<em>soft</em> <a href="https://example.org">link</a>`,
	})
	if cmd.HTML != "" || cmd.Text != "_soft_ link (https://example.org)" {
		t.Errorf("plain-only network got text=%q html=%q", cmd.Text, cmd.HTML)
	}
}

func TestRepliesBothWays(t *testing.T) {
	s, f, roomID, first := newFidPortal(t, testdb.SQLite(t), "m1", "question?")

	ev := fidFromBob(connector.KindMessage, "m2")
	ev.Text, ev.ReplyTo = "answer", "m1"
	reply := s.fidShown(f, roomID, ev)
	if got := reply.RelatesTo.GetReplyTo(); got != first.ID {
		t.Errorf("reply m.in_reply_to = %q, want %s", got, first.ID)
	}
	// A reply to a message the bridge never saw still arrives, as a plain message.
	ev = fidFromBob(connector.KindMessage, "m3")
	ev.Text, ev.ReplyTo = "orphan reply", "never-seen"
	if orphan := s.fidShown(f, roomID, ev); orphan.RelatesTo != nil {
		t.Errorf("reply to an unknown message has relates_to %+v", orphan.RelatesTo)
	}

	// Matrix → network, including a client's reply fallback, which must not reach the network.
	content := &event.MessageEventContent{
		MsgType: event.MsgText, Body: "> <@dm_bob:localhost> question?\n\nsure",
		Format:        event.FormatHTML,
		FormattedBody: `<mx-reply><blockquote>question?</blockquote></mx-reply>sure`,
		RelatesTo:     (&event.RelatesTo{}).SetReplyTo(first.ID),
	}
	cmd := s.fidSendFromMatrix(f, roomID, content)
	if cmd.ReplyTo != "m1" || cmd.Text != "sure" || cmd.HTML != "sure" {
		t.Errorf("reply from Matrix = reply_to %q text %q html %q", cmd.ReplyTo, cmd.Text, cmd.HTML)
	}
	unknown := &event.MessageEventContent{MsgType: event.MsgText, Body: "to nowhere",
		RelatesTo: (&event.RelatesTo{}).SetReplyTo("$not-bridged")}
	cmd = s.fidSendFromMatrix(f, roomID, unknown)
	if cmd.ReplyTo != "" || cmd.Text != "to nowhere" {
		t.Errorf("reply to an unknown event = %+v", cmd)
	}
}

func TestEditsBothWays(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s, f, roomID, first := newFidPortal(t, target, "m1", "teh typo")
		ctx := context.Background()

		ev := fidFromBob(connector.KindEdit, "e1")
		ev.Target, ev.Text, ev.HTML = "m1", "the typo", "<i>the</i> typo"
		f.send(ev)
		edit := s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
			return evt.Content.AsMessage().RelatesTo.GetReplaceID() == first.ID
		})
		msg := edit.Content.AsMessage()
		if edit.Sender != s.ghost(fidBob) || msg.RelatesTo.Type != event.RelReplace || msg.NewContent == nil ||
			msg.NewContent.Body != "the typo" || msg.NewContent.FormattedBody != "<i>the</i> typo" || msg.Body != "* the typo" {
			t.Errorf("edit event = %s", edit.Content.VeryRaw)
		}
		// A long non-ASCII edit: the short fallback for clients without
		// edits shows no broken character, m.new_content the whole text.
		long := "a" + strings.Repeat("é", 80)
		ev = fidFromBob(connector.KindEdit, "e3")
		ev.Target, ev.Text = "m1", long
		f.send(ev)
		edit = s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
			m := evt.Content.AsMessage()
			return m.RelatesTo.GetReplaceID() == first.ID && m.NewContent != nil && m.NewContent.Body == long
		})
		if msg = edit.Content.AsMessage(); strings.ContainsRune(msg.Body, utf8.RuneError) || !strings.HasPrefix(msg.Body, "* aé") {
			t.Errorf("long edit fallback = %q", msg.Body)
		}
		// An edit of an unknown message is skipped and the portal carries on.
		ev = fidFromBob(connector.KindEdit, "e2")
		ev.Target, ev.Text = "never-seen", "whatever"
		f.send(ev)
		s.fidBobSays(f, roomID, "m2", "still here")

		// Matrix → network.
		sent, remote := s.fidSendText(roomID, "my mesage")
		editResp, err := s.alice.SendMessageEvent(ctx, roomID, event.EventMessage, &event.MessageEventContent{
			MsgType: event.MsgText, Body: "* my message",
			NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: "my message"},
			RelatesTo:  (&event.RelatesTo{}).SetReplace(sent),
		})
		if err != nil {
			t.Fatal(err)
		}
		cmd := f.fidWaitCommand(connector.OpEditMessage, nil)
		if cmd.Txn != string(editResp.EventID) || cmd.Target != remote || cmd.Text != "my message" || cmd.Chat.ID != fidBob {
			t.Errorf("edit_message = %+v, want txn %s target %s", cmd, editResp.EventID, remote)
		}
	})
}

func TestDeletesBothWays(t *testing.T) {
	s, f, roomID, first := newFidPortal(t, testdb.SQLite(t), "m1", "regrettable")
	ctx := context.Background()

	ev := fidFromBob(connector.KindDelete, "d1")
	ev.Target = "m1"
	f.send(ev)
	s.fidRoomEvent(roomID, event.EventRedaction, func(evt *event.Event) bool { return evt.Redacts == first.ID })
	redacted, err := s.alice.GetEvent(ctx, roomID, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if redacted.Unsigned.RedactedBecause == nil || len(redacted.Content.Raw) != 0 {
		t.Errorf("deleted message is not redacted: %s", redacted.Content.VeryRaw)
	}
	ev = fidFromBob(connector.KindDelete, "d2")
	ev.Target = "m1" // already gone: skipped
	f.send(ev)
	s.fidBobSays(f, roomID, "m2", "after the deletes")

	// Matrix → network: the user deletes their own message.
	sent, remote := s.fidSendText(roomID, "oops")
	red, err := s.alice.RedactEvent(ctx, roomID, sent)
	if err != nil {
		t.Fatal(err)
	}
	s.fidDeliverRedaction(roomID, red.EventID)
	cmd := f.fidWaitCommand(connector.OpDeleteMessage, nil)
	if cmd.Txn != string(red.EventID) || cmd.Target != remote {
		t.Errorf("delete_message = %+v, want txn %s target %s", cmd, red.EventID, remote)
	}
	// The contact's message can only be removed on Matrix; the user is told.
	bobMsg := s.waitMessage(roomID, "after the deletes")
	if red, err = s.alice.RedactEvent(ctx, roomID, bobMsg.ID); err != nil {
		t.Fatal(err)
	}
	s.fidDeliverRedaction(roomID, red.EventID)
	s.fidNotice(roomID, "removed on Matrix only")
	if n := len(f.commandsOf(connector.OpDeleteMessage)); n != 1 {
		t.Errorf("%d delete_message commands, want 1", n)
	}
}

func TestReactionsBothWays(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s, f, roomID, first := newFidPortal(t, target, "m1", "react to me")
		ctx := context.Background()
		ghost := s.ghost(fidBob)

		ev := fidFromBob(connector.KindReaction, "r1")
		ev.Target, ev.Key = "m1", "👍"
		f.send(ev)
		rx := s.fidRoomEvent(roomID, event.EventReaction, func(evt *event.Event) bool {
			return evt.Sender == ghost
		})
		if rel := rx.Content.AsReaction().RelatesTo; rel.Type != event.RelAnnotation || rel.EventID != first.ID || rel.Key != "👍" {
			t.Errorf("reaction relates_to = %+v", rel)
		}
		ev = fidFromBob(connector.KindReactionRemove, "r2")
		ev.Target, ev.Key = "m1", "👍"
		f.send(ev)
		s.fidRoomEvent(roomID, event.EventRedaction, func(evt *event.Event) bool { return evt.Redacts == rx.ID })

		// Matrix → network: react, then take the reaction back.
		resp, err := s.alice.SendReaction(ctx, roomID, first.ID, "❤️")
		if err != nil {
			t.Fatal(err)
		}
		react := f.fidWaitCommand(connector.OpReact, nil)
		if react.Txn != string(resp.EventID) || react.Target != "m1" || react.Key != "❤️" {
			t.Errorf("react = %+v", react)
		}
		// The network's echo (with the txn) is not posted a second time.
		echo := &connector.Event{Kind: connector.KindReaction, Login: testLogin, TS: time.Now().UnixMilli(), Chat: dmChat(fidBob),
			Sender: &connector.Sender{ID: testLogin, IsMe: true}, ID: "r-echo", Target: "m1", Key: "❤️", Txn: string(resp.EventID)}
		f.send(echo)
		red, err := s.alice.RedactEvent(ctx, roomID, resp.EventID)
		if err != nil {
			t.Fatal(err)
		}
		s.fidDeliverRedaction(roomID, red.EventID)
		unreact := f.fidWaitCommand(connector.OpUnreact, nil)
		if unreact.Txn != string(red.EventID) || unreact.Target != "m1" || unreact.Key != "❤️" {
			t.Errorf("unreact = %+v", unreact)
		}
		s.fidBobSays(f, roomID, "m2", "sentinel")
		mine := 0
		for _, evt := range s.sync.Events(roomID) {
			if evt.Type == event.EventReaction && evt.Sender == s.alice.UserID {
				mine++
			}
		}
		if mine != 1 {
			t.Errorf("alice has %d reaction events, want 1 (the echo must not be posted)", mine)
		}

		// A network without reactions: the user is told instead of silence.
		caps := helloFor().Capabilities
		caps.Reactions = false
		f = s.fidConnect(fakeSetup{caps: &caps, store: f.store})
		party, err := s.alice.SendReaction(ctx, roomID, first.ID, "🎉")
		if err != nil {
			t.Fatal(err)
		}
		s.fidNotice(roomID, "reaction was not delivered", "does not support reactions")
		if n := len(f.commandsOf(connector.OpReact)); n != 0 {
			t.Errorf("network without reactions got %d react commands", n)
		}

		// Killed after the notice but before the reaction was marked
		// handled, the bridge handles it again at its next start: the
		// notice goes out under the same transaction id and shows once.
		handled := func() bool {
			return s.countRows("SELECT COUNT(*) FROM mx_event WHERE event_id = $1 AND done", party.EventID) == 1
		}
		tesths.WaitFor(t, 20*time.Second, "reaction handled", func() (bool, error) { return handled(), nil })
		s.stopBridge()
		if _, err = s.target.Open(t).Exec(ctx, "UPDATE mx_event SET done = false WHERE event_id = $1", party.EventID); err != nil {
			t.Fatal(err)
		}
		s.startBridge()
		f = s.fidConnect(fakeSetup{caps: &caps, store: f.store})
		tesths.WaitFor(t, 30*time.Second, "replayed reaction handled", func() (bool, error) { return handled(), nil })
		bodies, err := s.timelineBodies(ctx, roomID)
		if err != nil {
			t.Fatal(err)
		}
		told := 0
		for body, n := range bodies {
			if strings.Contains(body, "reaction was not delivered") {
				told += n
			}
		}
		if told != 1 {
			t.Errorf("the room tells the user %d times that the reaction was not delivered, want once", told)
		}
	})
}

func TestDeliveryFailures(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hi")
	ctx := context.Background()
	setFail := func(e *connector.Error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.fail[connector.OpSendMessage] = e
	}

	// A refusal is final: the user reads what failed and why.
	setFail(&connector.Error{Code: connector.ErrForbidden, Message: "the contact blocked you"})
	if _, err := s.alice.SendText(ctx, roomID, "are you there?"); err != nil {
		t.Fatal(err)
	}
	s.fidNotice(roomID, "your message was not delivered", "the contact blocked you")

	// A retryable failure is retried with backoff until it goes through.
	setFail(&connector.Error{Code: connector.ErrNetwork, Message: "network hiccup", Retryable: true})
	resp, err := s.alice.SendText(ctx, roomID, "second try")
	if err != nil {
		t.Fatal(err)
	}
	attempts := func() int {
		n := 0
		for _, c := range f.commandsOf(connector.OpSendMessage) {
			if c.Txn == string(resp.EventID) {
				n++
			}
		}
		return n
	}
	tesths.WaitFor(t, 20*time.Second, "two failed attempts", func() (bool, error) { return attempts() >= 2, nil })
	setFail(nil)
	s.fidRemoteID(resp.EventID)
	if n := attempts(); n < 3 {
		t.Errorf("%d attempts, want at least 3 (two failures, then success)", n)
	}
	for _, evt := range s.messagesIn(roomID) {
		if strings.Contains(evt.Content.AsMessage().Body, "network hiccup") {
			t.Errorf("a retried message produced a failure notice: %q", evt.Content.AsMessage().Body)
		}
	}

	// Any other op that keeps failing is given up after the last retry
	// (backoff 0.5+1+2+4 s), and the user is told. The connector had it
	// each time and answered with an error worth retrying, which does not
	// prove it did nothing, so the notice says it may not have arrived.
	f.mu.Lock()
	f.fail[connector.OpReact] = &connector.Error{Code: connector.ErrNetwork, Message: "network down", Retryable: true}
	f.mu.Unlock()
	rx, err := s.alice.SendReaction(ctx, roomID, resp.EventID, "👍")
	if err != nil {
		t.Fatal(err)
	}
	s.sync.WaitEvent(t, 30*time.Second, func(evt *event.Event) bool {
		msg := evt.Content.AsMessage()
		return evt.RoomID == roomID && msg != nil && msg.MsgType == event.MsgNotice &&
			strings.Contains(msg.Body, "Your reaction may not have been delivered") && strings.Contains(msg.Body, "network down")
	})
	if n := len(f.commandsOf(connector.OpReact)); n != 5 {
		t.Errorf("react was tried %d times, want 5", n)
	}
	for _, c := range f.commandsOf(connector.OpReact) {
		if c.Txn != string(rx.EventID) {
			t.Errorf("retry carries txn %q, want %s", c.Txn, rx.EventID)
		}
	}
}

// TestUnusableResultDoesNotBlockTheRoom: a send_message answered without a
// message id cannot be mapped; the user is told, and later messages go on.
func TestUnusableResultDoesNotBlockTheRoom(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m1", "hi")
	ctx := context.Background()
	f.mu.Lock()
	f.blank[connector.OpSendMessage] = true
	f.mu.Unlock()
	if _, err := s.alice.SendText(ctx, roomID, "lost id"); err != nil {
		t.Fatal(err)
	}
	s.fidNotice(roomID, "your message was not delivered", "no message id")
	f.mu.Lock()
	f.blank[connector.OpSendMessage] = false
	f.mu.Unlock()
	resp, err := s.alice.SendText(ctx, roomID, "next one")
	if err != nil {
		t.Fatal(err)
	}
	tesths.WaitFor(t, 20*time.Second, "the next message at the connector", func() (bool, error) {
		for _, c := range f.commandsOf(connector.OpSendMessage) {
			if c.Txn == string(resp.EventID) {
				return true, nil
			}
		}
		return false, nil
	})
}
