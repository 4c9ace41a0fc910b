package bridge_test

import (
	"bytes"
	"context"
	"testing"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestContactProfileChange: a renamed contact with a new picture shows both
// in the ghost's global profile and in its member event in the portal,
// which is what clients display. The picture is fetched once per avatar id.
func TestContactProfileChange(t *testing.T) {
	s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) { cfg.Bridge.MediaFetchAllow = loopbackMedia })
	f := s.fidConnect(fakeSetup{})
	roomID, _ := s.fidPortal(f, "m1", "hi")
	ctx := context.Background()
	ghost := s.ghost(fidBob)
	pic := makePNG(t, 16, 16)
	srv := newFileServer(t, map[string][]byte{"/bob.png": pic})

	contact := &connector.Contact{ID: fidBob, Name: "Robert",
		Avatar: &connector.Avatar{ID: "av-1", URL: srv.URL + "/bob.png", MimeType: "image/png"}}
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: contact})
	member := s.fidRoomEvent(roomID, event.StateMember, func(evt *event.Event) bool {
		m := evt.Content.AsMember()
		return evt.GetStateKey() == string(ghost) && m.Displayname == "Robert" && m.AvatarURL != ""
	}).Content.AsMember()
	if member.Membership != event.MembershipJoin {
		t.Errorf("ghost member event after rename has membership %q", member.Membership)
	}
	profile, err := s.alice.GetProfile(ctx, ghost)
	if err != nil {
		t.Fatal(err)
	}
	if profile.DisplayName != "Robert" || profile.AvatarURL.CUString() != member.AvatarURL {
		t.Errorf("global profile = %q %s, member event = %q %s", profile.DisplayName, profile.AvatarURL, member.Displayname, member.AvatarURL)
	}
	if got := s.download(member.AvatarURL); !bytes.Equal(got, pic) {
		t.Errorf("avatar content differs from the contact's picture (%d bytes, want %d)", len(got), len(pic))
	}

	// The same picture again (same avatar id) is not fetched again.
	f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: contact})
	s.fidBobSays(f, roomID, "m2", "same me")
	if n := srv.hitsOf("/bob.png"); n != 1 {
		t.Errorf("avatar fetched %d times, want once", n)
	}
}

// TestAvatarSkipped: a contact picture the bridge may not fetch (on
// loopback, not allowed), that is gone (404), or that is not a picture (an
// HTML page, whatever type the network claims for it; the homeserver would
// serve it with that type) is not set on the ghost. The name still applies,
// the picture is fetched at most once, and the chat goes on without the
// contact event being retried.
func TestAvatarSkipped(t *testing.T) {
	page := []byte("<!DOCTYPE html><html><script>alert(1)</script></html>")
	for _, c := range []struct {
		name    string
		allow   []string
		picture []byte
		fetches int
	}{
		{"internal address", nil, makePNG(t, 8, 8), 0},
		{"not a picture", loopbackMedia, page, 1},
		{"gone", loopbackMedia, nil, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newFidelityStack(t, testdb.SQLite(t), func(cfg *config.Config) { cfg.Bridge.MediaFetchAllow = c.allow })
			f := s.fidConnect(fakeSetup{})
			roomID, _ := s.fidPortal(f, "m1", "hi")
			files := map[string][]byte{}
			if c.picture != nil {
				files["/bob.png"] = c.picture
			}
			srv := newFileServer(t, files)
			contact := &connector.Contact{ID: fidBob, Name: "Robert",
				Avatar: &connector.Avatar{ID: "av-1", URL: srv.URL + "/bob.png", MimeType: "image/png"}}
			f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin, Contact: contact})
			s.fidBobSays(f, roomID, "m2", "after the profile")
			s.wantGhostProfile(roomID, fidBob, "Robert", false)
			if n := srv.hitsOf("/bob.png"); n != c.fetches {
				t.Errorf("the picture was fetched %d times, want %d", n, c.fetches)
			}
		})
	}
}

// wantGhostProfile checks a ghost's name and whether it has a picture,
// both in its global profile and in its member event in the room. Call it
// after a message that followed the profile change: the connector's events
// of a chat are applied in order, so the change is then complete.
func (s *stack) wantGhostProfile(roomID id.RoomID, contactID, name string, picture bool) {
	s.t.Helper()
	ctx := context.Background()
	ghost := s.ghost(contactID)
	profile, err := s.alice.GetProfile(ctx, ghost)
	if err != nil {
		s.t.Fatal(err)
	}
	var member event.MemberEventContent
	if err := s.alice.StateEvent(ctx, roomID, event.StateMember, string(ghost), &member); err != nil {
		s.t.Fatal(err)
	}
	if profile.DisplayName != name || member.Displayname != name {
		s.t.Errorf("ghost named %q in its profile and %q in the room, want %q", profile.DisplayName, member.Displayname, name)
	}
	if got := !profile.AvatarURL.IsEmpty() || member.AvatarURL != ""; got != picture {
		s.t.Errorf("ghost picture %q in its profile and %q in the room, want a picture: %v", profile.AvatarURL, member.AvatarURL, picture)
	}
}
