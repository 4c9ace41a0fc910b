package portal

// Review (fidelity): fidelity and hostile-content defects. Each test fails on the
// code as reviewed and states what a user would see.

import (
	"bytes"

	"context"
	"encoding/base64"
	"image"
	"image/jpeg"
	"maunium.net/go/mautrix/event"
	"runtime"
	"strings"
	"testing"

	xhtml "golang.org/x/net/html"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// htmlDepth is how deeply blockquote/ul/ol really nest once an HTML parser
// (the one mautrix's format package uses) has built the tree.
func htmlDepth(t *testing.T, s string) int {
	t.Helper()
	doc, err := xhtml.Parse(strings.NewReader(s))
	if err != nil {
		return -1
	}
	var walk func(n *xhtml.Node, d int) int
	walk = func(n *xhtml.Node, d int) int {
		if n.Type == xhtml.ElementNode && (n.Data == "blockquote" || n.Data == "ul" || n.Data == "ol") {
			d++
		}
		best := d
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			best = max(best, walk(c, d))
		}
		return best
	}
	return walk(doc, 0)
}

// scanHTML is the guard as htmlToPlain applies it: the text of an HTML
// document, entities decoded, and how deeply line-prefixing elements (quotes, lists) nest in its parsed tree.
// HTML the parser refuses (deeper than its limit of 512 elements) counts as
// nested beyond any limit.
func scanHTML(html string) (text string, maxDepth int) {
	body, err := parseBody(html)
	if err != nil {
		return tokenText(html), 513
	}
	return nodeText(body), prefixDepth(body, 0)
}

// TestNestingGuardFooledByStrayEndTags: scanHTML decrements its
// depth on every </ol>, </ul> or </blockquote>, also on a stray one that
// closes nothing, and the sanitiser keeps stray end tags. So
// "<blockquote></ol>" repeated N times nests N quotes while the guard sees
// depth 1, and mautrix's converter re-prefixes every line at every level:
// quadratic time and gigabytes of garbage from one message of a contact.
func TestNestingGuardFooledByStrayEndTags(t *testing.T) {
	const depth = 300
	raw := strings.Repeat("<blockquote></ol>", depth) + strings.Repeat("x<br>", 8000)
	clean := sanitizeRemoteHTML(raw)
	_, seen := scanHTML(clean)
	if real := htmlDepth(t, clean); real > maxPrefixNesting && seen <= maxPrefixNesting {
		t.Errorf("sanitised HTML nests %d quotes, the guard sees %d (limit %d)", real, seen, maxPrefixNesting)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := textContent("", raw) // a 58 KB message; frames may carry 1 MiB
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("one %d-byte remote message allocated %d MiB to derive its plain body (%d bytes)",
			len(raw), alloc>>20, len(c.Body))
	}
}

// TestRemotePillOfAnotherUser: the contact's HTML may carry a
// matrix.to (or matrix:u/) link to any Matrix user; clients render it as a
// pill (avatar, display name) indistinguishable from a real mention, and
// the plain body keeps only the link text, so the target is hidden there.
func TestRemotePillOfAnotherUser(t *testing.T) {
	for _, in := range []string{
		`<a href="https://matrix.to/#/@admin:x">Your admin</a> says: send me the code`,
		`<a href="matrix:u/admin:x">Your admin</a> says: send me the code`,
	} {
		c := textContent("", in)
		if strings.Contains(c.FormattedBody, "@admin:x") || strings.Contains(c.FormattedBody, "matrix:u/") {
			t.Errorf("remote HTML kept a user pill: %s (body %q)", c.FormattedBody, c.Body)
		}
	}
}

// TestEditOfSplitMessageLeavesStaleParts: a long message arrives as
// several parts; the contact's edit replaces part 0 only, so the old text's
// remaining parts stay in the room under the edited one.
func TestEditOfSplitMessageLeavesStaleParts(t *testing.T) {
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", strings.Repeat("old words ", 6_000))) // 60 KB: three parts
	parts, err := u.db.Message.GetParts(context.Background(), database.PortalKey{LoginID: unitLoginID, ChatID: "bob"}, "m1")
	if err != nil || len(parts) < 2 {
		t.Fatalf("setup: %d parts (%v), want a split message", len(parts), err)
	}
	u.hs.Reset()
	edit := bobs(connector.KindEdit, "e1", "m1")
	edit.Text = "short new text"
	u.remote(t, edit)
	touched := map[string]bool{}
	for _, c := range u.hs.Calls() {
		if target, _ := field(c.Content, "m.relates_to", "event_id").(string); target != "" {
			touched[target] = true
		}
		if c.EventID != "" && c.Method != "SendMessageEvent" {
			touched[string(c.EventID)] = true
		}
	}
	for _, p := range parts[1:] {
		if !touched[string(p.MXID)] {
			t.Errorf("part %d (%s) of the edited message still shows the old text", p.Part, p.MXID)
		}
	}
}

// 1x1 lossless WebP (a common format for photos and stickers).
const webp1x1 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="

// TestWebPImageHasNoSize: only GIF, JPEG and PNG decoders are
// registered, so a WebP image gets no info.w/info.h and clients cannot
// reserve its box (the docs promise sizes for images).
func TestWebPImageHasNoSize(t *testing.T) {
	data, _ := base64.StdEncoding.DecodeString(webp1x1)
	u := newUnit(t, false)
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "m1", Sender: &connector.Sender{ID: "bob"},
		Attachments: []connector.Attachment{{Name: "s.webp", MimeType: "image/webp", Data: data}}})
	sends := u.sends()
	img := sends[len(sends)-1].Content
	if img["msgtype"] != "m.image" || field(img, "info", "w") != float64(1) || field(img, "info", "h") != float64(1) {
		t.Errorf("webp image = %v, want m.image with info.w/h 1x1", img)
	}
}

// TestImageThatIsNotOne: the claimed mimetype alone picks m.image
// and the uploaded Content-Type, although the bytes are an HTML page; the
// user gets a broken image, and the media repository serves the page as
// image/png. (Avatars are sniffed: connector.PictureType.)
func TestImageThatIsNotOne(t *testing.T) {
	u := newUnit(t, false)
	page := []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>")
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "m1", Sender: &connector.Sender{ID: "bob"},
		Attachments: []connector.Attachment{{Name: "cat.png", MimeType: "image/png", Data: page}}})
	sends := u.sends()
	c := sends[len(sends)-1].Content
	if c["msgtype"] == "m.image" {
		t.Errorf("HTML bytes sent as m.image (info %v)", c["info"])
	}
	for _, up := range u.hs.Calls("UploadMedia") {
		if up.Content["content_type"] == "image/png" {
			t.Errorf("HTML bytes uploaded as %v", up.Content["content_type"])
		}
	}
}

// jpegWithOrientation is a w×h JPEG whose EXIF says "rotate 90° CW"
// (orientation 6), as phone cameras write for portrait photos.
func jpegWithOrientation(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, w, h)), nil); err != nil {
		t.Fatal(err)
	}
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, // header, IFD at 8
		1, 0, // one entry
		0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, // Orientation, SHORT, 1, value 6
		0, 0, 0, 0} // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	seg = append(seg, payload...)
	src := buf.Bytes()
	return append(append(append([]byte{}, src[:2]...), seg...), src[2:]...)
}

// TestJPEGOrientationIgnored: info.w/h are the stored pixel
// dimensions, before the EXIF rotation every client and the homeserver's
// thumbnailer apply; a portrait phone photo is announced as landscape.
func TestJPEGOrientationIgnored(t *testing.T) {
	u := newUnit(t, false)
	u.remote(t, &connector.Event{Kind: connector.KindMessage, ID: "m1", Sender: &connector.Sender{ID: "bob"},
		Attachments: []connector.Attachment{{Name: "p.jpg", MimeType: "image/jpeg", Data: jpegWithOrientation(t, 40, 20)}}})
	sends := u.sends()
	img := sends[len(sends)-1].Content
	if field(img, "info", "w") != float64(20) || field(img, "info", "h") != float64(40) {
		t.Errorf("portrait photo announced as %vx%v, want 20x40", field(img, "info", "w"), field(img, "info", "h"))
	}
}

// TestHTMLOnlyBodyMismatch: for HTML without text the plain body
// (notifications, replies' quoted text, clients without HTML) says
// something else than the HTML shows.
func TestHTMLOnlyBodyMismatch(t *testing.T) {
	// An inline image from mxc: the HTML shows it, the body says nothing can be shown.
	if c := textContent("", `<img src="mxc://x/abc" alt="">`); c.FormattedBody != "" && c.Body == emptyBody {
		t.Errorf("HTML shows an image, body says %q", c.Body)
	}
	// A line break inside a paragraph renders as a space; the body glues the words.
	if c := textContent("", "<p>see you\ntomorrow</p>"); !strings.Contains(c.Body, "you tomorrow") && !strings.Contains(c.Body, "you\ntomorrow") {
		t.Errorf("body %q, HTML shows \"see you tomorrow\"", c.Body)
	}
	// Table cells run together: "ab12" for a two-by-two table.
	if c := textContent("", "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"); strings.Contains(c.Body, "ab12") {
		t.Errorf("table body %q runs its cells together", c.Body)
	}
	// A tracking image loses its src but stays an <img>: clients draw a broken image.
	if c := textContent("", `hi <img src="https://tracker.example/p.gif" alt="">`); strings.Contains(c.FormattedBody, "<img") && !strings.Contains(c.FormattedBody, "src=") {
		t.Errorf("formatted body keeps an <img> without src: %s", c.FormattedBody)
	}
}

// TestCaptionRemovedByEditSendsFileName: a client that edits a
// picture's caption away (Element X) sends m.new_content whose body is the
// file name; editText passes that on, so the contact sees the message's
// text turn into "IMG_0001.jpg".
func TestCaptionRemovedByEditSendsFileName(t *testing.T) {
	ed := &event.MessageEventContent{MsgType: event.MsgImage, Body: "* IMG_0001.jpg",
		RelatesTo:  (&event.RelatesTo{}).SetReplace("$orig"),
		NewContent: &event.MessageEventContent{MsgType: event.MsgImage, Body: "IMG_0001.jpg", FileName: "IMG_0001.jpg", URL: "mxc://x/y"}}
	if text, _ := editText(ed); text != "" {
		t.Errorf("caption removed by an edit goes to the network as %q", text)
	}
}
