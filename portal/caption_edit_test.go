package portal

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix/id"
)

func mediaEditOf(target id.EventID, body string) map[string]any {
	return map[string]any{"type": "m.room.message", "content": map[string]any{
		"msgtype": "m.image", "body": "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.image", "body": body, "filename": "IMG_0001.jpg", "url": "mxc://x/y"},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": target}}}
}

// TestCaptionEdits: a new caption goes to the network as the edit's text;
// a caption edited away (the body is the file name again) is no
// edit_message with the file name as text, but a notice to the user.
// Found by a review (helper agent).
func TestCaptionEdits(t *testing.T) {
	u, room, got := queuedRelationsUnit(t)
	u.conn.down.Store(false)
	u.handle(t, room, "$m", map[string]any{"type": "m.room.message", "content": map[string]any{"msgtype": "m.text", "body": "look"}})
	u.handle(t, room, "$e1", mediaEditOf("$m", "a new caption"))
	u.handle(t, room, "$e2", mediaEditOf("$m", "IMG_0001.jpg"))
	want := []string{"send_message look", "edit_message r$m a new caption"}
	if g := got(); strings.Join(g, "|") != strings.Join(want, "|") {
		t.Errorf("the network got %q, want %q", g, want)
	}
	var notices []string
	for _, raw := range u.hs.Timeline(room) {
		var evt struct {
			Content map[string]any `json:"content"`
		}
		_ = json.Unmarshal(raw, &evt)
		if evt.Content["msgtype"] == "m.notice" {
			notices = append(notices, evt.Content["body"].(string))
		}
	}
	if len(notices) != 1 || !strings.Contains(notices[0], "removes all of the message's text") {
		t.Errorf("notices = %q", notices)
	}
}
