package testxmpp

import (
	"testing"
	"time"
)

func TestClientsExchangeMessages(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	srv.Register(t, "alice", "alice-pw")
	srv.Register(t, "bob", "bob-pw")
	alice := srv.Dial(t, "alice", "alice-pw")
	bob := srv.Dial(t, "bob", "bob-pw")

	id := bob.SendChat(t, alice.Bare(), "hi <alice> & co", "")
	got := alice.Next(t, 5*time.Second, WithBody)
	if got.Body != "hi <alice> & co" || got.OriginID != id || got.ID != id {
		t.Fatalf("alice got %+v, want body, id and origin-id %s", got, id)
	}
	bob.Correct(t, alice.Bare(), id, "fixed")
	if got := alice.Next(t, 5*time.Second, WithBody); got.Replace != id || got.Body != "fixed" {
		t.Fatalf("correction arrived as %+v", got)
	}
	bob.React(t, alice.Bare(), id, "👍", "🎉")
	if got := alice.Next(t, 5*time.Second, func(m *Message) bool { return m.ReactionsTo != "" }); len(got.Reactions) != 2 {
		t.Fatalf("reactions arrived as %+v", got)
	}
	bob.ChatState(t, alice.Bare(), "composing")
	if got := alice.Next(t, 5*time.Second, func(m *Message) bool { return m.ChatState != "" }); got.ChatState != "composing" {
		t.Fatalf("chat state arrived as %+v", got)
	}
	bob.SetVCard(t, "Bob Builder", []byte("\x89PNG fake"), "image/png")
}
