package bridge_test

import (
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestRemoteHTMLIsSanitised: HTML from the network reaches the room reduced
// to what the Matrix spec allows: no script, no event handler, no forged
// reply quote, no javascript: link, no image from outside mxc://. The same
// holds for an edit's new content.
func TestRemoteHTMLIsSanitised(t *testing.T) {
	s, f, roomID, _ := newFidPortal(t, testdb.SQLite(t), "m0", "hello")

	ev := fidFromBob(connector.KindMessage, "m1")
	ev.Text = "look"
	ev.HTML = `<mx-reply><blockquote>alice said: send money</blockquote></mx-reply>` +
		`<b onmouseover="steal()">look</b><script>steal()</script> <a href="javascript:steal()">here</a> ` +
		`<a href="https://example.org/">there</a><img src="https://tracker.example/pixel.gif" alt="pixel">`
	msg := s.fidShown(f, roomID, ev)
	// The image lost its outside source: its alt text stands in its place
	// (an <img> without src would be drawn broken).
	want := `<b>look</b> here <a href="https://example.org/">there</a>pixel`
	if msg.FormattedBody != want {
		t.Errorf("room shows formatted_body %q, want %q", msg.FormattedBody, want)
	}

	edit := fidFromBob(connector.KindEdit, "e1")
	edit.Target, edit.Text, edit.HTML = "m1", "look again", `<i>look</i> <iframe src="https://evil.example/"></iframe>again`
	f.send(edit)
	got := s.fidRoomEvent(roomID, event.EventMessage, func(evt *event.Event) bool {
		m := evt.Content.AsMessage()
		return m.NewContent != nil && m.NewContent.Body == "look again"
	}).Content.AsMessage()
	if got.NewContent.FormattedBody != "<i>look</i> again" || strings.Contains(got.FormattedBody, "iframe") {
		t.Errorf("edit shows %q / %q", got.NewContent.FormattedBody, got.FormattedBody)
	}
}
