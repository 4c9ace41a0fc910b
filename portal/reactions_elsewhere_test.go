package portal

import (
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// bodiesWith are the bodies of the messages sent that contain text.
func (u *unit) bodiesWith(text string) []string {
	var out []string
	for _, c := range u.sends() {
		if body, _ := c.Content["body"].(string); strings.Contains(body, text) {
			out = append(out, body)
		}
	}
	return out
}

// TestReactionElsewhereRepeated: the connector hands bob's reaction to his
// message from before the upgrade over again, under the same id (the XMPP
// connector replays a reaction set after a crash and counts on the bridge
// to drop the repeats), when the homeserver no longer remembers the
// notice's transaction id. The user is told once, as a repeat of a
// reaction to a message of this room shows nothing new; so is the
// reaction's removal, repeated in the same way.
func TestReactionElsewhereRepeated(t *testing.T) {
	u, _, _ := movedUnit(t)
	react := bobOn(connector.KindReaction, "r1")
	react.Key = "👍"
	u.remote(t, react)
	u.hs.ForgetTransactions()
	u.remote(t, react)
	if got := u.bodiesWith("reacted 👍 to"); len(got) != 1 {
		t.Errorf("notices of the reaction, handed over twice: %q, want one", got)
	}
	unreact := bobOn(connector.KindReactionRemove, "x1")
	unreact.Key = "👍"
	u.remote(t, unreact)
	u.hs.ForgetTransactions()
	u.remote(t, unreact)
	if got := u.bodiesWith("took back the 👍 reaction"); len(got) != 1 {
		t.Errorf("notices of the reaction's removal, handed over twice: %q, want one", got)
	}
}
