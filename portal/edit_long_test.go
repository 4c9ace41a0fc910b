package portal

import (
	"context"
	"strings"
	"testing"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// redactedBy lists the events the homeserver was asked to redact.
func redactedBy(u *unit) map[string]bool {
	out := map[string]bool{}
	for _, c := range u.hs.Calls("RedactEvent") {
		out[string(c.EventID)] = true
	}
	return out
}

// TestEditOfLongTextRedactsItsTail: an edit of a long message from the
// network edits its first part and redacts the parts that carried the rest
// of the old text, a preview's message.txt included, but never the
// message's attachments; a second edit has nothing left to redact. Found by
// a review (helper agent).
func TestEditOfLongTextRedactsItsTail(t *testing.T) {
	ctx := context.Background()
	key := database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}
	for name, text := range map[string]string{
		"split into parts":         strings.Repeat("old words ", 6_000),
		"preview with message.txt": strings.Repeat("old words ", 30_000),
	} {
		t.Run(name, func(t *testing.T) {
			u := newUnit(t, false)
			msg := fromBob("m1", text)
			msg.Attachments = []connector.Attachment{{Name: "a.bin", MimeType: "application/octet-stream", Data: []byte("data")}}
			u.remote(t, msg)
			parts, err := u.db.Message.GetParts(ctx, key, "m1")
			if err != nil || len(parts) < 3 {
				t.Fatalf("setup: %d parts (%v)", len(parts), err)
			}
			file := parts[len(parts)-1]
			u.hs.Reset()
			edit := bobs(connector.KindEdit, "e1", "m1")
			edit.Text = "short new text"
			u.remote(t, edit)
			redacted := redactedBy(u)
			for _, p := range parts[1 : len(parts)-1] {
				if !redacted[string(p.MXID)] {
					t.Errorf("part %d of the old text was not redacted", p.Part)
				}
			}
			if redacted[string(parts[0].MXID)] || redacted[string(file.MXID)] {
				t.Errorf("the edited part or the attachment was redacted: %v", redacted)
			}
			left, _ := u.db.Message.GetParts(ctx, key, "m1")
			if len(left) != 2 || left[0].Part != 0 || left[1].MXID != file.MXID {
				t.Errorf("stored parts after the edit: %d", len(left))
			}
			u.hs.Reset()
			again := bobs(connector.KindEdit, "e2", "m1")
			again.Text = "newer"
			u.remote(t, again)
			if r := redactedBy(u); len(r) != 0 {
				t.Errorf("second edit redacted %v", r)
			}
			if s := u.sends(); len(s) != 1 {
				t.Errorf("second edit sent %d events", len(s))
			}
		})
	}
}
