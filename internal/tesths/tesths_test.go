package tesths

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func bridgeRegistration(t *testing.T) *appservice.Registration {
	reg := appservice.CreateRegistration()
	reg.ID = "dmbridge"
	reg.URL = fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	reg.SenderLocalpart = "dmbridgebot"
	reg.Namespaces.UserIDs.Register(regexp.MustCompile(`@dm_.*:localhost`), true)
	return reg
}

// asClient is what an appservice uses to act as userID with its as_token.
func asClient(t *testing.T, hs *Homeserver, asToken string, userID id.UserID) *mautrix.Client {
	c, err := mautrix.NewClient(hs.URL, userID, asToken)
	if err != nil {
		t.Fatal(err)
	}
	c.SetAppServiceUserID = true
	return c
}

func wantWhoami(t *testing.T, c *mautrix.Client, want id.UserID) {
	t.Helper()
	resp, err := c.Whoami(t.Context())
	if err != nil {
		t.Fatalf("whoami as %s: %v", want, err)
	}
	if resp.UserID != want {
		t.Fatalf("whoami = %s, want %s", resp.UserID, want)
	}
}

func TestDendriteStarts(t *testing.T) {
	t.Parallel()
	reg := bridgeRegistration(t)
	dp := DoublePuppetRegistration(Domain)
	hs := Start(t, reg, dp)
	ctx := t.Context()

	alice := hs.CreateUser(t, "alice")
	wantWhoami(t, alice, "@alice:localhost")

	// Dendrite creates the sender_localpart account itself at startup, so
	// the bridge's usual "ensure registered" call meets M_USER_IN_USE; that
	// must count as success.
	bot := asClient(t, hs, reg.AppToken, hs.UserID("dmbridgebot"))
	_, _, err := bot.Register(ctx, &mautrix.ReqRegister[any]{
		Username: "dmbridgebot", Type: mautrix.AuthTypeAppservice, InhibitLogin: true,
	})
	if err != nil && !errors.Is(err, mautrix.MUserInUse) {
		t.Fatalf("registering bot: %v", err)
	}
	wantWhoami(t, bot, "@dmbridgebot:localhost")

	ghost := asClient(t, hs, reg.AppToken, hs.UserID("dm_ghost"))
	if _, _, err := ghost.Register(ctx, &mautrix.ReqRegister[any]{
		Username: "dm_ghost", Type: mautrix.AuthTypeAppservice, InhibitLogin: true,
	}); err != nil {
		t.Fatalf("registering ghost: %v", err)
	}
	wantWhoami(t, ghost, "@dm_ghost:localhost")

	// The bridge's own token must not reach outside its namespace...
	if _, err := asClient(t, hs, reg.AppToken, alice.UserID).Whoami(ctx); !errors.Is(err, mautrix.MForbidden) {
		t.Fatalf("bridge token masquerading as alice: got %v, want M_FORBIDDEN", err)
	}
	// ...which is what the double-puppet registration is for.
	wantWhoami(t, asClient(t, hs, dp.AppToken, alice.UserID), alice.UserID)
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	dp := DoublePuppetRegistration(Domain)
	hs := Start(t, dp)
	ctx := t.Context()
	alice := hs.CreateUser(t, "alice")
	bob := hs.CreateUser(t, "bob")
	bobSync := NewSyncWatcher(t, bob)

	if got := DirectContent(t, bob); len(got) != 0 {
		t.Fatalf("fresh user has m.direct %v", got)
	}

	created, err := alice.CreateRoom(ctx, &mautrix.ReqCreateRoom{
		Preset: "trusted_private_chat", Invite: []id.UserID{bob.UserID}, IsDirect: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	roomID, invite := bobSync.WaitInvite(t, 10*time.Second)
	if roomID != created.RoomID || invite.Sender != alice.UserID || !invite.Content.AsMember().IsDirect {
		t.Fatalf("invite %s from %s (direct=%v), want %s from %s", roomID, invite.Sender,
			invite.Content.AsMember().IsDirect, created.RoomID, alice.UserID)
	}

	if _, err := bob.JoinRoomByID(ctx, roomID); err != nil {
		t.Fatal(err)
	}
	sent, err := alice.SendText(ctx, roomID, "hello bob")
	if err != nil {
		t.Fatal(err)
	}
	msg := bobSync.WaitEvent(t, 10*time.Second, func(evt *event.Event) bool { return evt.ID == sent.EventID })
	if msg.RoomID != roomID || msg.Content.AsMessage().Body != "hello bob" {
		t.Fatalf("got %+v", msg)
	}
	if len(bobSync.Events(roomID)) < 3 { // at least the invite, the join and the message
		t.Fatalf("only %d events recorded for the room", len(bobSync.Events(roomID)))
	}

	// m.direct written through the double puppet, as the bridge will do it.
	puppet := asClient(t, hs, dp.AppToken, bob.UserID)
	direct := map[id.UserID][]id.RoomID{alice.UserID: {roomID}}
	if err := puppet.SetAccountData(ctx, event.AccountDataDirectChats.Type, direct); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 5*time.Second, "m.direct in bob's sync", func() (bool, error) {
		return len(bobSync.AccountData(event.AccountDataDirectChats)) > 0, nil
	})
	if got := DirectContent(t, bob); len(got[alice.UserID]) != 1 || got[alice.UserID][0] != roomID {
		t.Fatalf("m.direct = %v", got)
	}
}
