package portal

import (
	"encoding/json"
	"strings"
	"testing"

	"maunium.net/go/mautrix/event"
)

func TestSplitTextKeepsEverythingWithinLimit(t *testing.T) {
	inputs := []string{
		strings.Repeat("a", 100_000),
		strings.Repeat("<&>\"\\\n\x01é😀 word ", 5_000),
		strings.Repeat("x", 50) + "\xff\xfe" + strings.Repeat("\u2028", 9_000),
		"short",
	}
	for _, in := range inputs {
		const limit = 4096
		parts := splitText(in, limit)
		if strings.Join(parts, "") != in {
			t.Fatalf("parts of a %d-byte text do not join back to it", len(in))
		}
		for i, p := range parts {
			encoded, _ := json.Marshal(p)
			if len(encoded)-2 > limit {
				t.Fatalf("part %d encodes to %d bytes, limit %d", i, len(encoded)-2, limit)
			}
			if p == "" {
				t.Fatalf("part %d is empty", i)
			}
		}
	}
}

func TestSplitTextPrefersWordBreaks(t *testing.T) {
	in := strings.Repeat("word ", 2_000)
	for i, p := range splitText(in, 1000)[:3] {
		if !strings.HasSuffix(p, " ") {
			t.Fatalf("part %d ends mid-word: %q", i, p[len(p)-10:])
		}
	}
}

// surelyFits may skip the encoding only where the encoding would have fit:
// strings at the bound made wholly of the bytes JSON widens most, and any
// field beyond the four of a text content, send it to the measurement.
func TestSurelyFitsOnlyWhatFits(t *testing.T) {
	n := (maxContentBytes - textKeysBytes) / 6
	worst := []string{"\x01", "\xff", "<", "\u2028", "é", "\""}
	for _, w := range worst {
		for _, body := range []int{n - len("m.text"), n / 2} {
			text := strings.Repeat(w, body/len(w))
			c := &event.MessageEventContent{MsgType: event.MsgText, Body: text}
			if body < n-len("m.text") {
				c.Format, c.FormattedBody = event.FormatHTML, strings.Repeat(w, (n-len("m.text")-len(event.FormatHTML)-len(text))/len(w))
			}
			encoded, err := json.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			if surelyFits(c) && len(encoded) > maxContentBytes {
				t.Fatalf("%q: surelyFits, but it encodes to %d bytes", w, len(encoded))
			}
			if !surelyFits(c) {
				t.Fatalf("%q: a text of %d bytes in all is within the bound and should surely fit", w, len(c.Body)+len(c.FormattedBody))
			}
		}
	}
	over := &event.MessageEventContent{MsgType: event.MsgText, Body: strings.Repeat("a", n)}
	if surelyFits(over) {
		t.Fatal("a text past the bound surely fits")
	}
	for _, c := range []*event.MessageEventContent{
		{MsgType: event.MsgText, Body: "x", Mentions: &event.Mentions{}},
		{MsgType: event.MsgText, Body: "x", FileName: "f"},
		{MsgType: event.MsgText, Body: "x", GalleryItems: []*event.MessageEventContent{{Body: strings.Repeat("y", 40_000)}}},
		{MsgType: event.MsgText, Body: "x", BeeperBroadcastOutsideThread: true},
	} {
		if surelyFits(c) {
			t.Fatalf("a content with more than text fields surely fits: %+v", c)
		}
	}
}
