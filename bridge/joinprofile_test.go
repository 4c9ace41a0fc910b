package bridge_test

import (
	"context"
	"testing"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// memberEvents returns every m.room.member event of user in the room's
// history, oldest first, as alice can read it.
func (s *stack) memberEvents(roomID id.RoomID, user id.UserID) []*event.MemberEventContent {
	s.t.Helper()
	resp, err := s.alice.Messages(context.Background(), roomID, "", "", mautrix.DirectionBackward, nil, 200)
	if err != nil {
		s.t.Fatalf("read history of %s: %v", roomID, err)
	}
	var out []*event.MemberEventContent
	for i := len(resp.Chunk) - 1; i >= 0; i-- {
		evt := resp.Chunk[i]
		if evt.Type != event.StateMember || evt.GetStateKey() != string(user) {
			continue
		}
		_ = evt.Content.ParseRaw(evt.Type)
		out = append(out, evt.Content.AsMember())
	}
	return out
}

// setAliceProfile gives alice a displayname and a picture, and returns the
// picture's mxc.
func (s *stack) setAliceProfile(name string) id.ContentURIString {
	s.t.Helper()
	ctx := context.Background()
	if err := s.alice.SetDisplayName(ctx, name); err != nil {
		s.t.Fatal(err)
	}
	up, err := s.alice.UploadBytes(ctx, makePNG(s.t, 8, 8), "image/png")
	if err != nil {
		s.t.Fatal(err)
	}
	if err = s.alice.SetAvatarURL(ctx, up.ContentURI); err != nil {
		s.t.Fatal(err)
	}
	return up.ContentURI.CUString()
}

// checkJoins asserts that every member event of user in the room carries the
// displayname and picture: the user never shows under the bare id, and joins
// exactly once (no join followed by a rename).
func (s *stack) checkJoins(roomID id.RoomID, user id.UserID, name string, avatar func(id.ContentURIString) bool) {
	s.t.Helper()
	joins := 0
	for _, m := range s.memberEvents(roomID, user) {
		if m.Membership == event.MembershipJoin {
			joins++
			if m.Displayname != name || !avatar(m.AvatarURL) {
				s.t.Errorf("%s joined %s as %q with avatar %q, want %q with a picture", user, roomID, m.Displayname, m.AvatarURL, name)
			}
		}
	}
	if joins != 1 {
		s.t.Errorf("%s has %d join member events in %s, want 1", user, joins, roomID)
	}
}

// TestUserJoinShowsProfile: in a portal the bridge creates when a contact
// writes first, the user's own join (the double puppet's) shows the user's
// displayname and avatar, not the bare Matrix id.
func TestUserJoinShowsProfile(t *testing.T) {
	s := newStack(t, testdb.SQLite(t))
	pic := s.setAliceProfile("Alice Liddell")
	f := s.connectFake(nil)
	roomID := s.bobPortal(f, "m1", "hello alice")
	s.checkJoins(roomID, s.alice.UserID, "Alice Liddell", func(got id.ContentURIString) bool { return got == pic })

	// A second portal reuses the cached profile and shows it too.
	f.send(textFrom("carol@network", "m2", "hi from carol"))
	second := s.roomOf("carol@network")
	s.waitMessage(second, "hi from carol")
	s.checkJoins(second, s.alice.UserID, "Alice Liddell", func(got id.ContentURIString) bool { return got == pic })
}

// TestGhostJoinsAsContact: when the user starts the DM (inviting a ghost from
// their client, or with the bot's start-chat), the ghost's only join already
// shows the contact's name and picture.
func TestGhostJoinsAsContact(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target, stackOptions{mediaFetchAllow: loopbackMedia})
		pic := s.setAliceProfile("Alice Liddell")
		srv := newFileServer(t, map[string][]byte{"/c.png": makePNG(t, 12, 12)})
		f := s.connectFake(nil)
		f.mu.Lock()
		f.avatar = &connector.Avatar{ID: "pic-1", URL: srv.URL + "/c.png", MimeType: "image/png"}
		f.mu.Unlock()
		hasPic := func(got id.ContentURIString) bool { return got != "" }

		bob := s.ghost("bob@network")
		invited := s.createDM(s.alice, bob)
		s.waitMembership(s.sync, invited, bob, event.MembershipJoin)
		if got := s.roomOf("bob@network"); got != invited {
			t.Fatalf("portal room = %s, want %s", got, invited)
		}
		s.waitDirect(bob, invited, true)
		s.checkJoins(invited, bob, "Resolved bob@network", hasPic)

		mgmt, _ := s.managementRoom()
		s.command(mgmt, "start-chat carol@network")
		started := s.roomOf("carol@network")
		carol := s.ghost("carol@network")
		s.waitMembership(s.sync, started, s.alice.UserID, event.MembershipJoin)
		s.checkJoins(started, carol, "Resolved carol@network", hasPic)
		s.checkJoins(started, s.alice.UserID, "Alice Liddell", func(got id.ContentURIString) bool { return got == pic })
	})
}
