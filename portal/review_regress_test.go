package portal

import (
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// TestHistoryBeforeLiveKeptDespiteClockSkew: the live message m1 is
// found in the history answer, so everything before it is history by the
// network's own order. Its ts, though, is the connector's clock (the XMPP
// connector stamps a live message without a delay with time.Now()), while
// archived messages carry the server's stamp. With the server's clock 1.5 s
// ahead, h1 (sent by bob half a second before m1) has a larger ts than m1
// and trimHistory's new ts cut drops it: it is in no later page either, and
// never comes live, so it is lost.
func TestHistoryBeforeLiveKeptDespiteClockSkew(t *testing.T) {
	msgs := []connector.Event{bobAt("h0", "h0", 500), bobAt("h1", "h1", 2000), bobAt("m1", "m1", 2500)}
	u := backfillUnit(t, archive(msgs...))
	live := bobAt("m1", "m1", 1000) // the connector's clock, 1.5 s behind the server's
	u.remote(t, &live)
	got := strings.Join(u.sentBodies(), " ")
	if got != "h0 h1 m1" {
		t.Errorf("room shows %q; want \"h0 h1 m1\": h1 came before m1 in the network's history", got)
	}
}
