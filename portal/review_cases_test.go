package portal

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/e2ee"
)

// Cases a review found in the handling of queued commands, sticker and
// stranger checks; each failed before its fix.

// TestCleanupWhileSending: the portal ends (the chat was deleted on the
// network) while a flush has the room's queue in hand and its first
// command is with the connector. That one may arrive and is reported as
// such; the second is reported as not delivered and is not sent after all.
func TestCleanupWhileSending(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	c := startCleanupWhileSending(t, u, room)
	c.release()
	c.finish(t)
	for _, g := range got() {
		if strings.Contains(g, "second") {
			t.Errorf("the network got %q after the user was told it was not delivered", g)
		}
	}
	var first, second string
	for _, n := range u.notices(t) {
		switch {
		case strings.HasPrefix(n, "⚠️ Your message may not have been delivered"):
			first = n
		case strings.HasPrefix(n, "⚠️ Your message was not delivered"):
			second = n
		}
	}
	if first == "" || second == "" {
		t.Errorf("notices %q; want one 'may not have been delivered' (the one in flight) and one 'was not delivered'", u.notices(t))
	}
}

// cleanupWhileSending is a room with two queued messages whose flush holds
// the first with the connector while the chat is deleted on the network.
type cleanupWhileSending struct {
	releaseOnce sync.Once
	held        chan struct{}
	inFlight    chan struct{}
	flushed     chan struct{}
}

// startCleanupWhileSending queues "first" ($a) and "second" ($b), starts a
// flush that holds $a until release, and has the network delete the chat
// meanwhile (on the chat's lane, not the room's).
func startCleanupWhileSending(t *testing.T, u *unit, room id.RoomID) *cleanupWhileSending {
	t.Helper()
	c := prepareCleanupWhileSending(t, u, room)
	c.deleteChat(t, u, room)
	return c
}

// prepareCleanupWhileSending queues the two messages and makes the
// connector hold $a; deleteChat does the rest.
func prepareCleanupWhileSending(t *testing.T, u *unit, room id.RoomID) *cleanupWhileSending {
	t.Helper()
	u.handle(t, room, "$a", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "first"}})
	u.handle(t, room, "$b", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "second"}})
	c := &cleanupWhileSending{held: make(chan struct{}), inFlight: make(chan struct{}), flushed: make(chan struct{})}
	var once sync.Once
	answer := u.conn.answer
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if cmd.Txn == "$a" {
			once.Do(func() { close(c.inFlight) })
			<-c.held
		}
		return answer(op, cmd)
	}
	return c
}

// deleteChat starts the flush and, once it holds $a, has the network
// delete the chat.
func (c *cleanupWhileSending) deleteChat(t *testing.T, u *unit, room id.RoomID) {
	t.Helper()
	u.conn.down.Store(false)
	go func() { u.m.flushCommands(context.Background(), room); close(c.flushed) }()
	<-c.inFlight
	u.remote(t, &connector.Event{Kind: connector.KindChatDeleted, ID: "del1"})
}

// release lets the connector answer $a; it may be called more than once.
func (c *cleanupWhileSending) release() { c.releaseOnce.Do(func() { close(c.held) }) }

// finish releases $a and waits for the flush.
func (c *cleanupWhileSending) finish(t *testing.T) {
	t.Helper()
	c.release()
	select {
	case <-c.flushed:
	case <-time.After(5 * time.Second):
		t.Fatal("flush stuck")
	}
}

// TestEmptyParagraphIsNotShownBlank: HTML whose only content the sanitiser
// removes leaves no formatted body that HTML clients would show blank.
func TestEmptyParagraphIsNotShownBlank(t *testing.T) {
	for _, html := range []string{`<p><img src="https://example.org/cat.png"></p>`, `<br>`, `<p>&nbsp;</p>`} {
		c := textContent("", html)
		if c.FormattedBody != "" || c.Body != emptyBody {
			t.Errorf("%s: body %q, formatted_body %q; want the stand-in body alone", html, c.Body, c.FormattedBody)
		}
	}
}

// TestUnencryptedStickerIsRefusedWhenRequired: with encryption.require a
// plaintext sticker is refused like a plaintext message.
func TestUnencryptedStickerIsRefusedWhenRequired(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	u.conn.down.Store(false)
	u.conn.caps.Media = true
	u.m.e2ee = &e2ee.Manager{} // only its presence is looked at on this path
	u.m.cfg.Encryption.Require = true
	u.handle(t, room, "$st", map[string]any{"type": "m.sticker", "content": map[string]any{"body": "cat", "url": "mxc://x/cat"}})
	if g := got(); len(g) != 0 {
		t.Errorf("with encryption.require the network got %q from a plaintext sticker", g)
	}
	if n := u.notices(t); len(n) != 1 || !strings.Contains(n[0], "Your sticker was not delivered") {
		t.Errorf("notices %q, want the sticker refused", n)
	}
}

// TestEarlyStickerIsCaughtUp: a sticker sent between the ghost's invite and
// its join (the first thing in a DM opened from Matrix) is bridged with
// the message after it.
func TestEarlyStickerIsCaughtUp(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	u.conn.down.Store(false)
	u.conn.caps.Media = true
	up, err := u.hs.Ghost("@someone:x", false).UploadBytes(context.Background(), []byte("png"), "image/png")
	if err != nil {
		t.Fatal(err)
	}
	p := u.portal(t)
	u.hs.SetTimeline(room,
		map[string]any{"event_id": "$inv", "room_id": room, "sender": unitUser, "type": "m.room.member", "state_key": string(unitGhost), "content": map[string]any{"membership": "invite"}},
		map[string]any{"event_id": "$st", "room_id": room, "sender": unitUser, "type": "m.sticker", "content": map[string]any{"body": "hi", "url": up.ContentURI.String()}},
		map[string]any{"event_id": "$txt", "room_id": room, "sender": unitUser, "type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "hello"}},
		map[string]any{"event_id": "$join", "room_id": room, "sender": unitGhost, "type": "m.room.member", "state_key": string(unitGhost), "content": map[string]any{"membership": "join"}},
	)
	if err := u.m.catchUpEarlyMessages(context.Background(), u.m.ghosts.Intent(p.ContactID), room, "$inv", unitUser); err != nil {
		t.Fatal(err)
	}
	if g := got(); len(g) != 2 {
		t.Errorf("network got %q, want the sticker and the text", g)
	}
}

// TestEditOfMessageDroppedInFlushIsQuiet: a flush drops a queued message
// the user deleted (noted early) and with it the edit behind it, which the
// flush had already read: the edit neither goes nor gets a notice.
func TestEditOfMessageDroppedInFlushIsQuiet(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	ctx := context.Background()
	u.handle(t, room, "$m", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "oops"}})
	u.handle(t, room, "$e", editOf("$m", "oops!"))
	if err := u.m.noteEarlyRedaction(ctx, "$m", room, "$red"); err != nil {
		t.Fatal(err)
	}
	u.conn.down.Store(false)
	u.m.flushCommands(ctx, room)
	if g := got(); len(g) != 0 {
		t.Errorf("network got %q", g)
	}
	if n := u.notices(t); len(n) != 0 {
		t.Errorf("notices %q, want none: the user deleted the message", n)
	}
}
