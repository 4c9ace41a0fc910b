package portal

import (
	"strings"

	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// setEdit turns content into an edit of target. Since mautrix-go v0.32.0
// SetEdit cuts a fallback body over 100 bytes to its first 50 bytes, which
// can split a multi-byte character; the JSON encoder would then show it as
// U+FFFD to clients without edit support. Dropping the partial character
// keeps the fallback clean. m.new_content, which edit-aware clients show,
// is never cut.
func setEdit(content *event.MessageEventContent, target id.EventID) {
	content.SetEdit(target)
	content.Body = strings.ToValidUTF8(content.Body, "")
}
