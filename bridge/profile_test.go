package bridge_test

import (
	"bytes"
	"context"
	"testing"

	"maunium.net/go/mautrix/event"

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
