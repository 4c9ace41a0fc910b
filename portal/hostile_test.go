package portal

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// What a connector can make the bridge do for people its input merely
// names (a review found each case; each test failed before its fix).

// otherLogin stores a second login, of another connector and another Matrix
// user, that has no chat with bob.
func otherLogin(t *testing.T, u *unit) {
	t.Helper()
	l := &database.Login{ID: "l2", ConnectorID: "c2", MatrixUser: "@eve:x", State: connector.LoginConnected}
	if _, err := u.db.Login.Upsert(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	if cerr := u.m.checkLogin(context.Background(), "c2", "l2"); cerr != nil {
		t.Fatalf("setup: c2 may not use l2: %v", cerr)
	}
	u.hs.Reset()
}

// TestOtherConnectorCannotRenameContact: bob's ghost is shared by every
// login that has bob; a connector whose logins have no chat with bob (eve's)
// neither renames him nor changes his presence in alice's DM.
func TestOtherConnectorCannotRenameContact(t *testing.T) {
	u, p := newUnitPortal(t)
	otherLogin(t, u)
	ev := &connector.Event{Kind: connector.KindContact, Login: "l2", Contact: &connector.Contact{ID: "bob", Name: "Bob (send your password to eve)"}}
	if err := u.m.applyRemote(context.Background(), "c2", ev, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	u.m.applyRemotePresence(context.Background(), "c2", &connector.Ephemeral{Kind: connector.KindPresence, Login: "l2", Contact: "bob",
		Presence: connector.PresenceOnline, StatusMsg: "eve says hi"})
	for _, c := range u.hs.Calls("SetDisplayName", "SendStateEvent", "SetPresence") {
		if c.User == unitGhost || c.RoomID == p.RoomID {
			t.Errorf("eve's connector changed bob's ghost: %s %v", c.Method, c.Content)
		}
	}
	// bob's own connector still can.
	ev = &connector.Event{Kind: connector.KindContact, Login: unitLoginID, Contact: &connector.Contact{ID: "bob", Name: "Bob B."}}
	if err := u.m.applyRemote(context.Background(), unitConnID, ev, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if len(u.hs.Calls("SetDisplayName")) == 0 {
		t.Error("bob's own connector could not rename him")
	}
}

// TestStrangerTypingAndReceiptAreNotTheContacts: typing and a read receipt
// in bob's chat from someone else do not show as bob's.
func TestStrangerTypingAndReceiptAreNotTheContacts(t *testing.T) {
	u, _ := newUnitPortal(t)
	u.hs.Reset()
	u.m.applyRemoteTyping(context.Background(), &connector.Ephemeral{Kind: connector.KindTyping, Login: unitLoginID,
		Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"}, Sender: &connector.Sender{ID: "mallory"}, Typing: true})
	u.remote(t, &connector.Event{Kind: connector.KindReadReceipt, ID: "r1", UpTo: "m1", Sender: &connector.Sender{ID: "mallory"}})
	if c := u.hs.Calls("UserTyping", "SendReceipt"); len(c) != 0 {
		t.Errorf("mallory's typing or receipt shown as bob's: %+v", c)
	}
}

// TestTxnOfOtherChatIsNotAnEcho: a message whose txn names an event of
// another chat's room is handled as any other message, not dropped as an
// echo (protocol section 4).
func TestTxnOfOtherChatIsNotAnEcho(t *testing.T) {
	u, p := newUnitPortal(t)
	ctx := context.Background()
	m1, err := u.db.Message.GetPart(ctx, p.PortalKey, "m1", 0)
	if err != nil || m1 == nil {
		t.Fatal(m1, err)
	}
	u.hs.Reset()
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "c1", Text: "hi, carol here", Txn: string(m1.MXID),
		Sender: &connector.Sender{ID: "carol"}, Chat: &connector.Chat{ID: "carol", Type: connector.ChatTypeDM, With: "carol"}})
	if n := len(u.sends()); n == 0 {
		t.Errorf("carol's message, whose txn names an event of bob's room, was dropped as an echo")
	}
}

// TestAvatarWithBadURLIsSkipped: an avatar URL of another scheme, or one
// that does not parse, is skipped rather than failing (and retrying) the
// contact event.
func TestAvatarWithBadURLIsSkipped(t *testing.T) {
	for _, url := range []string{"file:///etc/passwd", "gopher://example.org/x", "http://%zz"} {
		u, _ := newUnitPortal(t)
		ev := &connector.Event{Kind: connector.KindContact, Login: unitLoginID,
			Contact: &connector.Contact{ID: "bob", Name: "Bob", Avatar: &connector.Avatar{ID: "a1", URL: url}}}
		if err := u.m.applyRemote(context.Background(), unitConnID, ev, func(context.Context) error { return nil }); err != nil {
			t.Errorf("avatar %q: the contact event failed (permanent: %v): %v", url, isPermanent(err), err)
		}
	}
}

// TestLongNamesAreBounded: a contact name and a login name from the
// connector are cut to a size every homeserver takes.
func TestLongNamesAreBounded(t *testing.T) {
	u, _ := newUnitPortal(t)
	ev := &connector.Event{Kind: connector.KindContact, Login: unitLoginID, Contact: &connector.Contact{ID: "bob", Name: strings.Repeat("B", 100_000)}}
	if err := u.m.applyRemote(context.Background(), unitConnID, ev, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range u.hs.Calls("SetDisplayName") {
		if name, _ := c.Content["displayname"].(string); len([]rune(name)) > config.MaxDisplaynameRunes {
			t.Errorf("displayname of %d runes set", len([]rune(name)))
		}
	}
	l := *u.login
	l.Name = strings.Repeat("n", 200_000)
	if text := u.m.loginAlertText(&l, troubleBadCredentials, LoginStatus{State: connector.LoginBadCredentials}); len(text) > 4096 {
		t.Errorf("login alert is %d bytes", len(text))
	}
}

// TestStartChatAnswerNamingAnotherChatIsRefused: the network answers a
// start-chat with carol with the chat id of bob's DM; the user is not
// handed bob's room as carol's.
func TestStartChatAnswerNamingAnotherChatIsRefused(t *testing.T) {
	u, p := newUnitPortal(t)
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return &connector.Result{Contact: &connector.Contact{ID: "carol", Name: "Carol"},
			Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "carol"}}, nil
	}
	got, err := u.m.StartChat(context.Background(), unitUser, "", "carol")
	if err == nil && got.RoomID == p.RoomID {
		t.Errorf("start-chat with carol returned bob's portal %s", got.RoomID)
	} else if err == nil {
		t.Errorf("start-chat with carol = %+v, want it refused", got)
	}
}

// TestLongEditIsCut: a contact's edit far longer than one event can carry
// is cut to fit (an edit cannot be split), instead of being refused by the
// homeserver and parked.
func TestLongEditIsCut(t *testing.T) {
	u, _ := newUnitPortal(t)
	u.hs.Reset()
	u.remote(t, &connector.Event{Kind: connector.KindEdit, ID: "e1", Target: "m1", Text: strings.Repeat("word ", 40_000), Sender: &connector.Sender{ID: "bob"}})
	sends := u.sends()
	if len(sends) != 1 {
		t.Fatalf("%d events sent for the edit, want 1", len(sends))
	}
	if b, _ := json.Marshal(sends[0].Content); len(b) > 48<<10 {
		t.Errorf("edit sent with %d bytes of content", len(b))
	}
	newContent, _ := sends[0].Content["m.new_content"].(map[string]any)
	if body, _ := newContent["body"].(string); !strings.Contains(body, "too long to show") {
		t.Errorf("the cut edit does not say it was cut: ...%s", body[max(0, len(body)-80):])
	}
}

// TestInviteCannotRenameForeignContact: eve, whose connector has no chat
// with bob, invites bob's ghost; her connector's resolve answer does not
// rename the ghost alice's DM shows.
func TestInviteCannotRenameForeignContact(t *testing.T) {
	u, _ := newUnitPortal(t)
	otherLogin(t, u) // l2 on c2, @eve:x
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpResolveIdentifier {
			return &connector.Result{Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM, With: "bob"},
				Contact: &connector.Contact{ID: "bob", Name: "Bob (write to eve)"}}, nil
		}
		return &connector.Result{}, nil
	}
	inviteBob(t, u, "@eve:x", true)
	for _, c := range u.hs.Calls("SetDisplayName") {
		if name, _ := c.Content["displayname"].(string); c.User == unitGhost && strings.Contains(name, "eve") {
			t.Errorf("eve's connector renamed alice's contact through an invite: %q", name)
		}
	}
}

// TestStartChatAnswerWithoutWith: an answer that leaves chat.with out (the
// chat id is then the contact) still opens the existing DM.
func TestStartChatAnswerWithoutWith(t *testing.T) {
	u, p := newUnitPortal(t)
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		return &connector.Result{Contact: &connector.Contact{ID: "bob", Name: "Bob"},
			Chat: &connector.Chat{ID: "bob", Type: connector.ChatTypeDM}}, nil
	}
	got, err := u.m.StartChat(context.Background(), unitUser, "", "bob")
	if err != nil || got.RoomID != p.RoomID {
		t.Errorf("start-chat with bob (existing portal) = %+v, %v", got, err)
	}
}

// TestListedChatWithLongIDIsSkipped: list_chats naming a chat id no event
// could carry makes no portal.
func TestListedChatWithLongIDIsSkipped(t *testing.T) {
	u := newUnit(t, false)
	u.conn.caps.ListChats = true
	u.m.cfg.Bridge.Backfill.SyncRecentChats = 5
	long := strings.Repeat("c", 3*connector.MaxIDBytes)
	u.conn.answer = func(op string, cmd *connector.Command) (*connector.Result, error) {
		if op == connector.OpListChats {
			return &connector.Result{Chats: []connector.Chat{{ID: long, Type: connector.ChatTypeDM, With: "carol"}}}, nil
		}
		return &connector.Result{}, nil
	}
	if err := u.m.syncRecentChats(context.Background(), unitConnID, unitLoginID); err != nil {
		t.Fatal(err)
	}
	if p, _ := u.db.Portal.Get(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: long}); p != nil {
		t.Errorf("a portal was made for a %d-byte chat id", len(long))
	}
}

// TestMediumEditKeptWhole: an edit that fits one event is not cut.
func TestMediumEditKeptWhole(t *testing.T) {
	u, _ := newUnitPortal(t)
	u.hs.Reset()
	text := strings.Repeat("word ", 4000) // 20,000 bytes
	u.remote(t, &connector.Event{Kind: connector.KindEdit, ID: "e1", Target: "m1", Text: text, Sender: &connector.Sender{ID: "bob"}})
	sends := u.sends()
	if len(sends) != 1 {
		t.Fatalf("%d sends", len(sends))
	}
	nc, _ := sends[0].Content["m.new_content"].(map[string]any)
	if body, _ := nc["body"].(string); body != text {
		t.Errorf("a %d-byte edit was cut to %d bytes", len(text), len(body))
	}
}
