package portal

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
)

// remoteTxnID must keep giving the ids it gave before it was made cheaper:
// in-doubt markers and the homeserver's memory of a txn id outlive an
// upgrade, and a changed id would send a message again.
func TestRemoteTxnIDUnchanged(t *testing.T) {
	t.Parallel()
	before := func(ev *connector.Event, part int) string {
		h := sha256.New()
		for _, s := range []string{ev.Login, ev.Chat.ID, ev.ID, ev.Kind, strconv.Itoa(part)} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
		return "dmb_" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	long := strings.Repeat("é", 300)
	for _, ev := range []*connector.Event{
		{Login: "l1", Chat: &connector.Chat{ID: "c1"}, ID: "m1", Kind: connector.KindMessage},
		{Login: "", Chat: &connector.Chat{ID: ""}, ID: "", Kind: ""},
		{Login: long, Chat: &connector.Chat{ID: long}, ID: long, Kind: connector.KindEdit},
	} {
		for _, part := range []int{0, 1, 12, 1000} {
			if got, want := remoteTxnID(ev, part), before(ev, part); got != want {
				t.Errorf("remoteTxnID(%q..., %d) = %s, was %s", ev.ID, part, got, want)
			}
		}
	}
}
