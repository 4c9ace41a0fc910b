package portal

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// maxSentContent is what the content of an event the bridge sends may
// weigh: a homeserver refuses an event over 65536 bytes for good, and the
// envelope (ids, signatures, hashes) needs its share of those.
const maxSentContent = 60 << 10

// longPlain is a plain text that fits one event as it is (under
// maxContentBytes of JSON), of short lines, each of which HTML spells
// longer: "<br>" for its line break.
func longPlain() string {
	return strings.Repeat("ok\n", 7000)
}

// TestQuoteElsewhereFitsOneEvent: bob replies to, and corrects, his
// message from before the upgrade with a long plain text, which goes as
// one event. The quote that shows the old message in the new room must
// not take the event past what a homeserver takes: refused, the reply or
// the correction never showed (only a notice that it could not be
// bridged).
func TestQuoteElsewhereFitsOneEvent(t *testing.T) {
	u, _, _ := movedUnit(t)
	reply := fromBob("m2", longPlain())
	reply.ReplyTo = "m1"
	u.remote(t, reply)
	edit := bobOn(connector.KindEdit, "e1")
	edit.Text = longPlain()
	u.remote(t, edit)
	sends := u.sends()
	if len(sends) != 2 {
		t.Fatalf("sends = %d, want the reply and the correction", len(sends))
	}
	for i, what := range []string{"reply", "correction"} {
		encoded, err := json.Marshal(sends[i].Content)
		if err != nil {
			t.Fatal(err)
		}
		if len(encoded) > maxSentContent {
			t.Errorf("the %s's content weighs %d bytes, over %d", what, len(encoded), maxSentContent)
		}
		if body, _ := sends[i].Content["body"].(string); !strings.Contains(body, "before this room was upgraded") {
			t.Errorf("the %s does not quote the old message: %.80q", what, body)
		}
	}
}
