package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
	"github.com/dmbridge/dmbridge/provisioning"
)

// TestInviteGhostMakesPortal is "Start chat" in a Matrix client: the user
// creates a DM with a ghost, the ghost joins, and the room is the portal both
// ways.
func TestInviteGhostMakesPortal(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		ghost := s.ghost("bob@network")

		roomID := s.createDM(s.alice, ghost)
		// Clients send the first message right away, before the ghost
		// joins: the homeserver does not show it to the bridge then.
		resp, err := s.alice.SendText(ctx, roomID, "hi bob")
		if err != nil {
			t.Fatal(err)
		}
		s.waitMembership(s.sync, roomID, ghost, event.MembershipJoin)
		if got := s.roomOf("bob@network"); got != roomID {
			t.Errorf("portal room = %s, want the invited room %s", got, roomID)
		}
		// A lookup for the profile the ghost joins with, which creates
		// nothing on the network, then, once the room is accepted, the
		// chat is created.
		resolves := f.commandsOf(connector.OpResolveIdentifier)
		if len(resolves) != 2 || resolves[0].Create || !resolves[1].Create {
			t.Errorf("resolve_identifier commands = %+v, want one for bob@network without create, then one with", resolves)
		}
		for _, r := range resolves {
			if r.Identifier != "bob@network" || r.Login != testLogin {
				t.Errorf("resolve_identifier %+v, want bob@network of %s", r, testLogin)
			}
		}
		tesths.WaitFor(t, 20*time.Second, "send_message at the connector", func() (bool, error) {
			cmds := f.commandsOf(connector.OpSendMessage)
			return len(cmds) == 1 && cmds[0].Txn == string(resp.EventID) && cmds[0].Chat.ID == "bob@network", nil
		})
		f.send(textFrom("bob@network", "r1", "hello back"))
		if msg := s.waitMessage(roomID, "hello back"); msg.Sender != ghost {
			t.Errorf("reply sender = %s, want %s", msg.Sender, ghost)
		}
		s.waitDirect(ghost, roomID, true)
		var member event.MemberEventContent
		if err = s.alice.StateEvent(ctx, roomID, event.StateMember, string(ghost), &member); err != nil {
			t.Fatal(err)
		}
		if member.Displayname != "Resolved bob@network" {
			t.Errorf("ghost displayname in the room = %q, want the resolved contact's name", member.Displayname)
		}
	})
}

// TestInviteGhostRefusals: a chat that has a portal is pointed to, and a
// room that is not a DM is refused; the ghost leaves either way.
func TestInviteGhostRefusals(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	ctx := context.Background()
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	existing := s.bobPortal(f, "m1", "hi")

	second := s.createDM(s.alice, ghost)
	notice := s.waitNotice(s.sync, second, ghost, existing.URI().MatrixToURL())
	if !strings.Contains(notice, "already have a chat") {
		t.Errorf("notice = %q", notice)
	}
	s.waitMembership(s.sync, second, ghost, event.MembershipLeave)
	if got := s.roomOf("bob@network"); got != existing {
		t.Errorf("portal moved to %s, want it to stay %s", got, existing)
	}

	group, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "private_chat", Invite: []id.UserID{s.ghost("carol@network")}})
	if err != nil {
		t.Fatal(err)
	}
	s.waitNotice(s.sync, group.RoomID, s.ghost("carol@network"), "direct chats")
	s.waitMembership(s.sync, group.RoomID, s.ghost("carol@network"), event.MembershipLeave)
	if n := s.countRows("SELECT COUNT(*) FROM portal WHERE chat_id='carol@network'"); n != 0 {
		t.Errorf("a refused room made %d portals", n)
	}

	friend := s.hs.CreateUser(t, "friend")
	crowded, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{friend.UserID, s.ghost("dave@network")},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.waitNotice(s.sync, crowded.RoomID, s.ghost("dave@network"), string(friend.UserID))
	s.waitMembership(s.sync, crowded.RoomID, s.ghost("dave@network"), event.MembershipLeave)
	if n := s.countRows("SELECT COUNT(*) FROM portal WHERE chat_id='dave@network'"); n != 0 {
		t.Errorf("a room with another user made %d portals", n)
	}
}

// TestStartChatBotAndProvisioning: the bot's start-chat and the provisioning
// API reach the same portal, and asking again makes no second room.
func TestStartChatBotAndProvisioning(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{configure: func(c *config.Config) {
			c.Provisioning.SharedSecret = "provisioning-secret-for-tests-0123456789"
		}})
		f := s.connectFake(nil)
		mgmt, bot := s.managementRoom()

		s.command(mgmt, "start-chat carol@network")
		carol := s.roomOf("carol@network")
		s.waitNotice(s.sync, mgmt, bot, "Started a new chat")
		s.waitMembership(s.sync, carol, s.alice.UserID, event.MembershipJoin)

		status, res := s.provision(s.alice.AccessToken, "", "carol@network")
		if status != http.StatusOK || res.RoomID != carol || res.Created {
			t.Errorf("provisioning with the access token = %d %+v, want the existing room %s", status, res, carol)
		}
		status, res = s.provision("provisioning-secret-for-tests-0123456789", s.alice.UserID, "carol@network")
		if status != http.StatusOK || res.RoomID != carol || res.Created {
			t.Errorf("provisioning with the shared secret = %d %+v, want the existing room %s", status, res, carol)
		}

		status, res = s.provision(s.alice.AccessToken, "", "dave@network")
		if status != http.StatusOK || !res.Created || res.RoomID == "" {
			t.Fatalf("provisioning a new chat = %d %+v", status, res)
		}
		dave := res.RoomID
		s.command(mgmt, "start-chat dave@network")
		s.waitNotice(s.sync, mgmt, bot, "already have a chat with **Resolved dave@network**")
		s.waitNotice(s.sync, mgmt, bot, dave.URI().MatrixToURL())

		if n := s.countRows("SELECT COUNT(*) FROM portal"); n != 2 {
			t.Errorf("%d portals, want 2", n)
		}
		if n := len(f.commandsOf(connector.OpResolveIdentifier)); n != 5 {
			t.Errorf("%d resolve_identifier commands, want one per request (5)", n)
		}
		joined, err := s.alice.JoinedRooms(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(joined.JoinedRooms) != 3 {
			t.Errorf("alice is in %d rooms, want the management room and 2 portals", len(joined.JoinedRooms))
		}

		s.command(mgmt, "list")
		list := s.waitNotice(s.sync, mgmt, bot, "Your chats")
		for _, room := range []id.RoomID{carol, dave} {
			if !strings.Contains(list, room.URI().MatrixToURL()) {
				t.Errorf("list does not link %s: %q", room, list)
			}
		}
		s.command(mgmt, "ping")
		s.waitNotice(s.sync, mgmt, bot, "connector fake is online")
		s.command(mgmt, "logins")
		s.waitNotice(s.sync, mgmt, bot, "is for bridge admins")
		s.command(mgmt, "frobnicate")
		s.waitNotice(s.sync, mgmt, bot, "Unknown command")
	})
}

// createDM creates a room the way clients start a DM: trusted_private_chat,
// is_direct, the other user invited.
func (s *stack) createDM(client *mautrix.Client, invitee id.UserID) id.RoomID {
	s.t.Helper()
	resp, err := client.CreateRoom(context.Background(), &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{invitee},
	})
	if err != nil {
		s.t.Fatalf("create DM with %s: %v", invitee, err)
	}
	return resp.RoomID
}

// managementRoom opens alice's DM with the bridge bot and waits for the
// bot's help (which names start-chat); it returns the room and the bot.
func (s *stack) managementRoom() (id.RoomID, id.UserID) {
	s.t.Helper()
	bot := s.cfg.BotUserID()
	mgmt := s.createDM(s.alice, bot)
	s.waitNotice(s.sync, mgmt, bot, "start-chat")
	return mgmt, bot
}

// command sends a command to the bot as alice.
func (s *stack) command(roomID id.RoomID, text string) {
	s.t.Helper()
	if _, err := s.alice.SendText(context.Background(), roomID, text); err != nil {
		s.t.Fatalf("send %q: %v", text, err)
	}
}

// waitMembership waits until the watcher saw user's membership in the room.
func (s *stack) waitMembership(w *tesths.SyncWatcher, roomID id.RoomID, user id.UserID, membership event.Membership) {
	s.t.Helper()
	w.WaitEvent(s.t, 30*time.Second, func(evt *event.Event) bool {
		return evt.RoomID == roomID && evt.Type == event.StateMember && evt.GetStateKey() == string(user) &&
			evt.Content.AsMember().Membership == membership
	})
}

// waitNotice waits for a notice from sender in the room whose body or HTML
// contains want, and returns the body and HTML.
func (s *stack) waitNotice(w *tesths.SyncWatcher, roomID id.RoomID, sender id.UserID, want string) string {
	s.t.Helper()
	evt := w.WaitEvent(s.t, 30*time.Second, func(evt *event.Event) bool {
		if evt.RoomID != roomID || evt.Sender != sender || evt.Type != event.EventMessage {
			return false
		}
		msg := evt.Content.AsMessage()
		return msg != nil && msg.MsgType == event.MsgNotice && strings.Contains(msg.Body+"\n"+msg.FormattedBody, want)
	})
	msg := evt.Content.AsMessage()
	return msg.Body + "\n" + msg.FormattedBody
}

// waitDirect waits until alice's m.direct lists (or no longer lists) the room
// under the ghost.
func (s *stack) waitDirect(ghost id.UserID, roomID id.RoomID, listed bool) {
	s.t.Helper()
	tesths.WaitFor(s.t, 20*time.Second, "m.direct change", func() (bool, error) {
		return slices.Contains(tesths.DirectContent(s.t, s.alice)[ghost], roomID) == listed, nil
	})
}

func (s *stack) countRows(query string, args ...any) int {
	s.t.Helper()
	var n int
	if err := s.br.DB.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		s.t.Fatalf("%s: %v", query, err)
	}
	return n
}

type provisionResult struct {
	RoomID  id.RoomID `json:"room_id"`
	Created bool      `json:"created"`
	ErrCode string    `json:"errcode"`
}

// provision calls the start-chat endpoint with a bearer token and, for the
// shared secret, a user_id.
func (s *stack) provision(token string, user id.UserID, identifier string) (int, provisionResult) {
	s.t.Helper()
	u := s.cfg.Appservice.Address + provisioning.Prefix + "start-chat"
	if user != "" {
		u += "?user_id=" + url.QueryEscape(string(user))
	}
	body, _ := json.Marshal(map[string]string{"identifier": identifier})
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("provisioning request: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var res provisionResult
	if err = json.Unmarshal(data, &res); err != nil {
		s.t.Fatalf("provisioning answer %d is not JSON: %s", resp.StatusCode, data)
	}
	return resp.StatusCode, res
}

// TestRefusedInviteLeavesNoGhost: invites of ghosts that end in a refusal
// (a DM with a third person, a user without a login) leave no ghost in the
// bridge's database; an accepted one records its ghost. (The homeserver
// account may exist: the homeserver's user query registers a ghost before
// the invite, as the spec asks.)
func TestRefusedInviteLeavesNoGhost(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		f := s.connectFake(nil)
		// dave is a name the network does not know: only a contact the
		// user's login resolves is recorded before the room is accepted
		// (so that its ghost joins already named).
		f.mu.Lock()
		f.fail[connector.OpResolveIdentifier] = &connector.Error{Code: connector.ErrNotFound, Message: "no such contact"}
		f.mu.Unlock()
		friend := s.hs.CreateUser(t, "friend")
		dave := s.ghost("dave@network")
		crowded, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
			Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{friend.UserID, dave},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.waitNotice(s.sync, crowded.RoomID, dave, string(friend.UserID))
		s.waitMembership(s.sync, crowded.RoomID, dave, event.MembershipLeave)

		// friend has no login on the bridge.
		friendSync := tesths.NewSyncWatcher(t, friend)
		erin := s.ghost("erin@network")
		noLogin := s.createDM(friend, erin)
		s.waitNotice(friendSync, noLogin, erin, "cannot reach")
		s.waitMembership(friendSync, noLogin, erin, event.MembershipLeave)

		for _, g := range []id.UserID{dave, erin} {
			if n := s.countRows("SELECT COUNT(*) FROM ghost WHERE mxid=$1", g); n != 0 {
				t.Errorf("refused invite left %d ghost rows for %s", n, g)
			}
		}

		// An accepted invite does record its ghost.
		f.mu.Lock()
		delete(f.fail, connector.OpResolveIdentifier)
		f.mu.Unlock()
		carol := s.ghost("carol@network")
		room := s.createDM(s.alice, carol)
		if got := s.roomOf("carol@network"); got != room {
			t.Fatalf("portal of carol is %s, want the invited room %s", got, room)
		}
		if n := s.countRows("SELECT COUNT(*) FROM ghost WHERE mxid=$1", carol); n != 1 {
			t.Errorf("accepted invite: %d ghost rows for %s, want 1", n, carol)
		}
	})
}

// TestBotAnswersFirstMessage: Element creates a DM with its first message,
// so a command written as that message comes before the bot's join, and
// the homeserver does not push it to the bridge. After its welcome the bot
// reads what followed its invite and answers it. The bot's join is held
// back here until the command is in the room.
func TestBotAnswersFirstMessage(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0], stackOptions{hsProxy: true})
	ctx := context.Background()
	bot := s.br.Link.BotMXID()
	release := make(chan struct{})
	s.proxy.setRefuse(func(r *http.Request, _ []byte) (int, string) {
		if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/join") {
			if u := r.URL.Query().Get("user_id"); u == "" || u == string(bot) {
				<-release
			}
		}
		return 0, ""
	})
	resp, err := s.alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "trusted_private_chat", IsDirect: true, Invite: []id.UserID{bot}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = s.alice.SendText(ctx, resp.RoomID, "list"); err != nil {
		t.Fatal(err)
	}
	close(release)
	fromBot := func(prefix string) {
		t.Helper()
		s.sync.WaitEvent(t, 30*time.Second, func(evt *event.Event) bool {
			if evt.RoomID != resp.RoomID || evt.Sender != bot || evt.Type != event.EventMessage {
				return false
			}
			_ = evt.Content.ParseRaw(evt.Type)
			msg := evt.Content.AsMessage()
			return msg != nil && strings.HasPrefix(msg.Body, prefix)
		})
	}
	fromBot("Hello! I am the bridge bot.")
	fromBot("You have no bridged chats yet")
}

// TestEncryptedManagementRoomIsAnswered: many clients encrypt a new DM by
// default, and the bot has no device to read it. A command sent encrypted
// in the management room is answered, as a plain notice, with why it
// cannot be read and what to do, instead of going unanswered.
func TestEncryptedManagementRoomIsAnswered(t *testing.T) {
	s := newStack(t, testdb.Targets(t)[0])
	bot := s.br.Link.BotMXID()
	nio := startNio(t, s, "alice")
	nio.do(map[string]any{"cmd": "create_dm", "ghost": string(bot), "text": "hello bot"})
	if hello := nio.do(map[string]any{"cmd": "expect", "body": "Hello! I am the bridge bot.", "timeout": 60}); hello["sender"] != string(bot) {
		t.Fatalf("welcome = %v, want one from %s", hello, bot)
	}
	nio.do(map[string]any{"cmd": "send", "text": "help"})
	got := nio.do(map[string]any{"cmd": "expect", "body": "I cannot read encrypted messages", "timeout": 60})
	if got["sender"] != string(bot) || got["encrypted"] != false {
		t.Fatalf("answer to an encrypted command = %v, want a plain notice from %s", got, bot)
	}
}

// TestReplayedBotCommandIsAnsweredOnce: the bridge is killed after the bot
// answered a command but before the command's event was marked handled, so
// the next start handles it again. The user still reads the answer once:
// it goes out under a transaction id named after the command, and the
// homeserver keeps the first.
func TestReplayedBotCommandIsAnsweredOnce(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		ctx := context.Background()
		mgmt, bot := s.managementRoom()
		const answer = "You have no bridged chats yet"
		resp, err := s.alice.SendText(ctx, mgmt, "list")
		if err != nil {
			t.Fatal(err)
		}
		s.waitNotice(s.sync, mgmt, bot, answer)
		handled := func() int {
			return s.countRows("SELECT COUNT(*) FROM mx_event WHERE event_id = $1 AND done", resp.EventID)
		}
		tesths.WaitFor(t, 20*time.Second, "command marked handled", func() (bool, error) { return handled() == 1, nil })

		// What a kill between the answer and the mark leaves behind.
		s.stopBridge()
		db := s.target.Open(t)
		if _, err = db.Exec(ctx, "UPDATE mx_event SET done = false WHERE event_id = $1", resp.EventID); err != nil {
			t.Fatal(err)
		}
		s.startBridge()
		tesths.WaitFor(t, 30*time.Second, "replayed command handled", func() (bool, error) { return handled() == 1, nil })

		bodies, err := s.timelineBodies(ctx, mgmt)
		if err != nil {
			t.Fatal(err)
		}
		answers := 0
		for body, n := range bodies {
			if strings.HasPrefix(body, answer) {
				answers += n
			}
		}
		if answers != 1 {
			t.Errorf("the room shows the answer to the replayed command %d times, want once", answers)
		}
	})
}
