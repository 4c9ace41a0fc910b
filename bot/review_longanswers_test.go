package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/internal/fakematrix"
)

// Tests from a review (helper agent): the bot's list answers were one
// notice each, whatever their size.

// TestListManyChatsFitsInOneEvent: `list` answers with every portal
// of the user in one notice. A user with a few hundred DMs (sync of recent
// chats, or a connector that opens portals) gets an answer above the
// homeserver's 64 KiB event limit, which the homeserver refuses; the
// bot only logs the failed send, so the user gets no answer at all.
func TestListManyChatsFitsInOneEvent(t *testing.T) {
	var contacts []listContact
	for i := range 300 {
		contacts = append(contacts, listContact{id: fmt.Sprintf("contact%03d@chat.example.org", i),
			room: id.RoomID(fmt.Sprintf("!abcdefghijklmnopqr%03d:x", i)), name: fmt.Sprintf("Contact Number %03d With A Name", i)})
	}
	for _, size := range listAnswerSizes(t, contacts) {
		if size > 64<<10 {
			t.Errorf("the answer to `list` is %d bytes of content; the homeserver refuses events over 65536 bytes and the user gets no answer", size)
		}
	}
}

// TestListManyChatsAllShownOnce: the 300 chats of the test above come in
// several notices, each chat once, each notice with a transaction id of its
// own.
func TestListManyChatsAllShownOnce(t *testing.T) {
	hs := fakematrix.New("x", "@bot:x")
	b := &Bot{intent: hs.Bot(), log: zerolog.Nop()}
	var lines []string
	for i := range 300 {
		lines = append(lines, fmt.Sprintf("* **Contact Number %03d With A Name** (contact%03d@chat.example.org): https://matrix.to/#/!abcdefghijklmnopqr%03d:x", i, i, i))
	}
	b.replyList(context.Background(), "!mgmt:x", "$cmd", "Your chats:\n\n", lines)
	sends := hs.Calls("SendMessageEvent")
	if len(sends) < 2 {
		t.Fatalf("%d notices, want the list split", len(sends))
	}
	txns := map[string]bool{}
	var all strings.Builder
	for _, c := range sends {
		if txns[c.TxnID] {
			t.Errorf("transaction id %s used twice", c.TxnID)
		}
		txns[c.TxnID] = true
		body, _ := c.Content["body"].(string)
		all.WriteString(body)
	}
	if !txns["dmb_bot_re_$cmd"] {
		t.Errorf("the first part's transaction id is not the reply's: %v", txns)
	}
	for i := range 300 {
		if n := strings.Count(all.String(), fmt.Sprintf("contact%03d@", i)); n != 1 {
			t.Errorf("contact %03d shown %d times", i, n)
		}
	}
}

// TestReplyListBoundsEscapedAndEndless: lines of characters that grow most
// when rendered (an escaped "<" is "&lt;" in the HTML, and more in JSON)
// still make notices under the limit, and a list longer than maxReplyParts
// notices ends with how many were left out.
func TestReplyListBoundsEscapedAndEndless(t *testing.T) {
	hs := fakematrix.New("x", "@bot:x")
	b := &Bot{intent: hs.Bot(), log: zerolog.Nop()}
	line := "* " + escape(strings.Repeat("<&>", 300))
	lines := make([]string, 5000)
	for i := range lines {
		lines[i] = line
	}
	b.replyList(context.Background(), "!mgmt:x", "$cmd", "Many:\n\n", lines)
	sends := hs.Calls("SendMessageEvent")
	if len(sends) != maxReplyParts {
		t.Fatalf("%d notices, want %d", len(sends), maxReplyParts)
	}
	for i, c := range sends {
		if raw, _ := json.Marshal(c.Content); len(raw) > 64<<10 {
			t.Errorf("notice %d is %d bytes of content", i+1, len(raw))
		}
	}
	last, _ := sends[len(sends)-1].Content["body"].(string)
	if !strings.Contains(last, "…and ") || !strings.Contains(last, " more.") {
		t.Errorf("the last notice does not say how many were left out: ...%s", last[max(0, len(last)-80):])
	}
}
