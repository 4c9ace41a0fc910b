package bot

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fakematrix"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// newUnitBot is the bot on a SQLite database and a recording fake of Matrix.
func newUnitBot(t *testing.T) (*Bot, *fakematrix.Homeserver, *database.Database) {
	t.Helper()
	ctx := context.Background()
	target := testdb.SQLite(t)
	db := testdb.Open(t, target)
	cfg := config.Default()
	cfg.Homeserver.Domain, cfg.Homeserver.Address = "x", "http://127.0.0.1:9"
	cfg.Appservice.ID, cfg.Appservice.ASToken, cfg.Appservice.HSToken = "dmb", "as", "hs"
	cfg.Appservice.Bot.Username = "dmbridgebot"
	cfg.Permissions = config.Permissions{"x": config.LevelUser}
	link, err := appservice.New(ctx, cfg, db, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	hs := fakematrix.New("x", link.BotMXID())
	return New(cfg, db, link, hs.Bot(), nil, nil, zerolog.Nop()), hs, db
}

func botInvite(b *Bot, hs *fakematrix.Homeserver, roomID id.RoomID, inviter id.UserID, others ...id.UserID) *event.Event {
	bot := string(b.link.BotMXID())
	hs.SetState(roomID, event.StateMember, string(inviter), &event.MemberEventContent{Membership: event.MembershipJoin})
	hs.SetState(roomID, event.StateMember, bot, &event.MemberEventContent{Membership: event.MembershipInvite})
	for _, o := range others {
		hs.SetState(roomID, event.StateMember, string(o), &event.MemberEventContent{Membership: event.MembershipInvite})
	}
	return &event.Event{ID: "$inv", RoomID: roomID, Sender: inviter, Type: event.StateMember, StateKey: &bot,
		Content: event.Content{Parsed: &event.MemberEventContent{Membership: event.MembershipInvite}}}
}

// A served user's invite into a room of their own makes it their management
// room, with a welcome; an invite into a room with others is answered and
// left; an unserved user's invite is declined without joining.
func TestBotInvites(t *testing.T) {
	ctx := context.Background()
	b, hs, db := newUnitBot(t)
	if err := b.HandleRoomEvent(ctx, botInvite(b, hs, "!mgmt:x", "@alice:x")); err != nil {
		t.Fatal(err)
	}
	if u, err := db.User.Get(ctx, "@alice:x"); err != nil || u == nil || u.ManagementRoom != "!mgmt:x" {
		t.Errorf("management room = %+v, %v", u, err)
	}
	sends := hs.Calls("SendMessageEvent")
	if len(sends) != 1 || sends[0].RoomID != "!mgmt:x" || !strings.HasPrefix(sends[0].Content["body"].(string), "Hello! I am the bridge bot.") ||
		sends[0].TxnID != "dmb_bot_re_$inv" {
		t.Errorf("welcome = %+v", sends)
	}

	hs.Reset()
	if err := b.HandleRoomEvent(ctx, botInvite(b, hs, "!group:x", "@bob:x", "@carol:x")); err != nil {
		t.Fatal(err)
	}
	if hs.Membership("!group:x", b.link.BotMXID()) != event.MembershipLeave {
		t.Error("the bot stayed in a room with others")
	}
	if u, _ := db.User.Get(ctx, "@bob:x"); u != nil && u.ManagementRoom != "" {
		t.Errorf("a shared room became a management room: %+v", u)
	}

	hs.Reset()
	if err := b.HandleRoomEvent(ctx, botInvite(b, hs, "!eve:x", "@eve:elsewhere")); err != nil {
		t.Fatal(err)
	}
	if joins := hs.Calls("JoinRoomByID"); len(joins) != 0 {
		t.Errorf("joined for an unserved user: %+v", joins)
	}
	if st := hs.Calls("SendStateEvent"); len(st) != 1 || st[0].Content["membership"] != "leave" || st[0].Content["reason"] == nil {
		t.Errorf("decline = %+v, want a leave with a reason", st)
	}
}

// TestBotAnswersEncryptedMessage: the bot has no device, so an encrypted
// message in a management room is answered with a notice saying so (once
// per event), not with silence; in a room with others it stays quiet.
func TestBotAnswersEncryptedMessage(t *testing.T) {
	ctx := context.Background()
	b, hs, _ := newUnitBot(t)
	encrypted := func(roomID id.RoomID) *event.Event {
		return &event.Event{ID: "$enc", RoomID: roomID, Sender: "@alice:x", Type: event.EventEncrypted,
			Content: event.Content{Parsed: &event.EncryptedEventContent{Algorithm: id.AlgorithmMegolmV1}}}
	}
	for _, room := range []id.RoomID{"!mgmt:x", "!group:x"} {
		botInvite(b, hs, room, "@alice:x")
		hs.SetState(room, event.StateMember, string(b.link.BotMXID()), &event.MemberEventContent{Membership: event.MembershipJoin})
		if err := b.link.StateStore.SetMembership(ctx, room, b.link.BotMXID(), event.MembershipJoin); err != nil {
			t.Fatal(err)
		}
	}
	hs.SetState("!group:x", event.StateMember, "@bob:x", &event.MemberEventContent{Membership: event.MembershipJoin})
	hs.Reset()
	if err := b.HandleRoomEvent(ctx, encrypted("!mgmt:x")); err != nil {
		t.Fatal(err)
	}
	sends := hs.Calls("SendMessageEvent")
	if len(sends) != 1 || sends[0].RoomID != "!mgmt:x" || sends[0].TxnID != "dmb_bot_re_$enc" ||
		!strings.Contains(sends[0].Content["body"].(string), "cannot read encrypted messages") {
		t.Fatalf("answer to an encrypted message = %+v, want one notice saying it cannot be read", sends)
	}
	hs.Reset()
	if err := b.HandleRoomEvent(ctx, encrypted("!group:x")); err != nil {
		t.Fatal(err)
	}
	if sends := hs.Calls("SendMessageEvent"); len(sends) != 0 {
		t.Errorf("answered an encrypted message in a room with others: %+v", sends)
	}
}

// TestBotAnswersCommandsWrittenBeforeItJoined: clients create a DM with its
// first message, which the homeserver does not push while the bot is only
// invited. After its welcome the bot reads what followed its invite and
// answers the user's commands up to its own join; what came after the join
// was pushed and is not answered twice.
func TestBotAnswersCommandsWrittenBeforeItJoined(t *testing.T) {
	ctx := context.Background()
	b, hs, _ := newUnitBot(t)
	bot := string(b.link.BotMXID())
	msg := func(eventID, sender, body string) map[string]any {
		return map[string]any{"event_id": eventID, "sender": sender, "type": "m.room.message",
			"content": map[string]any{"msgtype": "m.text", "body": body}}
	}
	invite := botInvite(b, hs, "!mgmt:x", "@alice:x")
	hs.SetTimeline("!mgmt:x",
		map[string]any{"event_id": "$inv", "sender": "@alice:x", "type": "m.room.member", "state_key": bot,
			"content": map[string]any{"membership": "invite"}},
		msg("$early", "@alice:x", "list"),
		map[string]any{"event_id": "$join", "sender": bot, "type": "m.room.member", "state_key": bot,
			"content": map[string]any{"membership": "join"}},
		msg("$late", "@alice:x", "ping"))
	if err := b.HandleRoomEvent(ctx, invite); err != nil {
		t.Fatal(err)
	}
	var bodies []string
	for _, c := range hs.Calls("SendMessageEvent") {
		bodies = append(bodies, c.Content["body"].(string))
	}
	if len(bodies) != 2 || !strings.HasPrefix(bodies[0], "Hello! I am the bridge bot.") ||
		!strings.HasPrefix(bodies[1], "You have no bridged chats yet") {
		t.Errorf("bot said %q, want the welcome and the answer to the early list only", bodies)
	}
}

// TestBotAnswersAnEventOnce: an event handled again (a retry, or a replay
// after the bridge was killed between its answer and marking the event
// done) is not answered again: every answer's transaction id is named after
// the event it answers, so the homeserver keeps the first. The replayed
// invite repeats the welcome and the catch-up of the commands written
// before the bot joined; the user still reads each answer once.
func TestBotAnswersAnEventOnce(t *testing.T) {
	ctx := context.Background()
	b, hs, _ := newUnitBot(t)
	bot := string(b.link.BotMXID())
	invite := botInvite(b, hs, "!mgmt:x", "@alice:x")
	hs.SetTimeline("!mgmt:x",
		map[string]any{"event_id": "$inv", "sender": "@alice:x", "type": "m.room.member", "state_key": bot,
			"content": map[string]any{"membership": "invite"}},
		map[string]any{"event_id": "$early", "sender": "@alice:x", "type": "m.room.message",
			"content": map[string]any{"msgtype": "m.text", "body": "help"}})
	later := &event.Event{ID: "$later", RoomID: "!mgmt:x", Sender: "@alice:x", Type: event.EventMessage,
		Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: "list"}}}
	for range 2 {
		if err := b.HandleRoomEvent(ctx, invite); err != nil {
			t.Fatal(err)
		}
		if err := b.HandleRoomEvent(ctx, later); err != nil {
			t.Fatal(err)
		}
	}
	if sends := hs.Calls("SendMessageEvent"); len(sends) != 6 {
		t.Fatalf("%d sends, want the three answers sent twice: %+v", len(sends), sends)
	}
	var notices []string
	for _, raw := range hs.Timeline("!mgmt:x") {
		var evt struct {
			Sender  string         `json:"sender"`
			Content map[string]any `json:"content"`
		}
		if err := json.Unmarshal(raw, &evt); err != nil {
			t.Fatal(err)
		}
		if evt.Sender == bot && evt.Content["msgtype"] == "m.notice" {
			notices = append(notices, strings.SplitN(evt.Content["body"].(string), "\n", 2)[0])
		}
	}
	if len(notices) != 3 || !strings.HasPrefix(notices[0], "Hello! I am the bridge bot.") ||
		notices[1] != notices[0][len("Hello! I am the bridge bot. "):] || !strings.HasPrefix(notices[2], "You have no bridged chats yet") {
		t.Errorf("the room shows %q, want the welcome, the help and the list answer, once each", notices)
	}
}
