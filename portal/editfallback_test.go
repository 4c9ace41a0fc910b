package portal

import (
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/id"
)

// A long non-ASCII edit must keep a valid fallback body and the whole text in
// m.new_content: the fallback cut is by bytes and lands inside a character.
func TestSetEditFallbackStaysValidUTF8(t *testing.T) {
	// "* a" is 3 bytes and each "é" 2, so the cut at byte 50 splits an "é".
	text := "a" + strings.Repeat("é", 80)
	content := textContent(text, "<b>"+text+"</b>")
	setEdit(content, id.EventID("$target"))
	if !utf8.ValidString(content.Body) {
		t.Fatalf("fallback body is not valid UTF-8: %q", content.Body)
	}
	if !strings.HasPrefix(content.Body, "* aéé") || len(content.Body) > 100 {
		t.Errorf("fallback body = %q, want a short \"* \" fallback", content.Body)
	}
	if content.NewContent == nil || content.NewContent.Body != text || content.NewContent.FormattedBody != "<b>"+text+"</b>" {
		t.Errorf("m.new_content = %+v, want the whole edit", content.NewContent)
	}
	if content.RelatesTo.GetReplaceID() != "$target" {
		t.Errorf("relates_to = %+v", content.RelatesTo)
	}
}
