package portal

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

func historyIDs(evs []connector.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, ev.ID)
	}
	return out
}

func TestTrimHistory(t *testing.T) {
	now := time.UnixMilli(1_000_000_000)
	msg := func(id string, ageMin int) connector.Event {
		return connector.Event{ID: id, TS: now.Add(-time.Duration(ageMin) * time.Minute).UnixMilli()}
	}
	all := []connector.Event{msg("a", 50), msg("b", 40), msg("b", 40), msg("c", 30), msg("live", 20), msg("d", 10)}
	live := &connector.Event{ID: "live"}
	cases := []struct {
		name   string
		live   *connector.Event
		limit  int
		maxAge time.Duration
		want   []string
	}{
		{"stops before the live message, no repeats", live, 10, 0, []string{"a", "b", "c"}},
		{"newest within the limit", live, 2, 0, []string{"b", "c"}},
		{"max age", live, 10, 45 * time.Minute, []string{"b", "c"}},
		{"no live message", nil, 10, 0, []string{"a", "b", "c", "live", "d"}},
		{"live message not in the answer", &connector.Event{ID: "x"}, 10, 0, []string{"a", "b", "c", "live", "d"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := historyIDs(trimHistory(slices.Clone(all), c.live, c.limit, c.maxAge, now))
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestUsableHistory: a backfill answer cannot speak for another chat or
// login, nor post as someone who is not in the chat.
func TestUsableHistory(t *testing.T) {
	m := &Manager{}
	login := &database.Login{ID: "alice"}
	p := &database.Portal{PortalKey: database.PortalKey{LoginID: "alice", ChatID: "bob"}, ContactID: "bob"}
	other := &connector.Chat{ID: "eve", Type: connector.ChatTypeDM, With: "eve"}
	in := []connector.Event{
		{ID: "0", Login: "mallory", Sender: &connector.Sender{ID: "bob"}, Text: "another login's"},
		{ID: "1", Sender: &connector.Sender{ID: "bob"}, Text: "from bob"},
		{ID: "1b", Chat: other, Sender: &connector.Sender{ID: "alice", IsMe: true}, Text: "mine to eve"},
		{ID: "2", Sender: &connector.Sender{ID: "eve"}, Text: "eve is not in this chat"},
		{ID: "3", Sender: &connector.Sender{ID: "alice", IsMe: true}, Text: "mine"},
		{ID: "4", Kind: connector.KindEdit, Sender: &connector.Sender{ID: "bob"}, Target: "1", Text: "an edit"},
		{ID: "", Sender: &connector.Sender{ID: "bob"}, Text: "no id"},
		{ID: "6", Sender: &connector.Sender{ID: "bob"}},
		{ID: "7", Text: "no sender"},
	}
	ctx := zerolog.Nop().WithContext(context.Background())
	got := m.usableHistory(ctx, login, p, in)
	if ids := historyIDs(got); !slices.Equal(ids, []string{"1", "3"}) {
		t.Fatalf("usable = %q, want [1 3]", ids)
	}
	for _, ev := range got {
		if ev.Login != "alice" || ev.Chat.ID != "bob" || ev.Chat.With != "bob" || ev.Kind != connector.KindMessage {
			t.Errorf("message %s kept login %q chat %+v kind %q", ev.ID, ev.Login, ev.Chat, ev.Kind)
		}
	}
}
