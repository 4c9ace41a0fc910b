package portal

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"maunium.net/go/mautrix/event"
)

// plainBound is the most plain text an HTML body of n bytes may turn into.
// Anything larger is an amplification a remote party can aim at the
// homeserver's event limit and the bridge's memory.
func plainBound(n int) int { return 2*n + 1024 }

// htmlBound leaves a sanitiser room to escape characters (up to "&#34;").
func htmlBound(n int) int { return 6*n + 1024 }

var htmlSeeds = [][2]string{
	{"hello", ""},
	{"", "<b>bold</b> and <i>italic</i> <a href=\"https://example.org\">link</a>"},
	{"plain", "<p>para</p><ul><li>one</li><li>two</li></ul><ol><li>a</li></ol>"},
	{"", "<mx-reply><blockquote>quoted</blockquote></mx-reply>reply"},
	{"", "<pre><code class=\"language-go\">x := 1\n\ty</code></pre>"},
	{"", "<a href=\"https://matrix.to/#/@alice:hs\">Alice</a>: hi"},
	{"", "<img src=\"mxc://hs/abc\" alt=\"pic\"><script>alert(1)</script>"},
	{"", strings.Repeat("<blockquote>", 100) + strings.Repeat("x<br>", 100)},
	{"", strings.Repeat("<ul>", 600) + "<li>deep</li>"},
	{"", strings.Repeat("\t", 200)},
	{"", "a &amp; b &lt;c&gt; &nGt; &#x1F600;"},
	{"", "<table><tr><td>1</td><td>2</td></tr></table><hr>"},
	{"\xff", "\xfe<b>"},
}

// FuzzRemoteToMatrix converts what a remote party sends as text and HTML
// into the Matrix content the bridge posts. Properties: the text is kept as
// sent; HTML is marked as such and is the sanitised HTML, unless nothing
// visible of it survives sanitising; the body is never empty; the plain
// body derived from HTML is bounded by the HTML's size (or is the stand-in)
// and not empty when the HTML is plain words.
func FuzzRemoteToMatrix(f *testing.F) {
	for _, s := range htmlSeeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, text, html string) {
		c := textContent(text, html)
		if c.MsgType != event.MsgText {
			t.Fatalf("msgtype %q", c.MsgType)
		}
		if html == "" {
			if c.Format != "" || c.FormattedBody != "" || c.Body != text {
				t.Fatalf("plain message became %+v", c)
			}
			return
		}
		if strings.TrimSpace(text) != "" && c.Body != text {
			t.Fatalf("text %q became body %q", text, c.Body)
		}
		clean := sanitizeRemoteHTML(html)
		if strings.TrimSpace(htmlToPlain(clean)) == "" && !strings.Contains(clean, "<img") {
			clean = "" // nothing visible: no formatted body for clients to show blank
		}
		if (c.Format == event.FormatHTML) != (clean != "") || c.FormattedBody != clean {
			t.Fatalf("HTML %q sanitised to %q became format %q, formatted body %q", html, clean, c.Format, c.FormattedBody)
		}
		if strings.TrimSpace(c.Body) == "" {
			t.Fatalf("HTML %q with text %q gave an empty body", html, text)
		}
		if len(c.FormattedBody) > htmlBound(len(html)) {
			t.Fatalf("formatted body of %d bytes from %d bytes of HTML", len(c.FormattedBody), len(html))
		}
		if strings.TrimSpace(text) == "" {
			if c.Body != emptyBody && len(c.Body) > plainBound(len(html)) {
				t.Fatalf("body of %d bytes from %d bytes of HTML", len(c.Body), len(html))
			}
			if utf8.ValidString(html) && !strings.ContainsAny(html, "<&") && strings.TrimSpace(html) != "" && strings.TrimSpace(c.Body) == "" {
				t.Fatalf("plain-words HTML %q gave an empty body", html)
			}
		}
		body := len(c.Body)
		markAsUsers([]*event.MessageEventContent{c})
		if len(c.Body) > body+64 {
			t.Fatalf("marking grew the body by %d bytes", len(c.Body)-body)
		}
	})
}

// FuzzMatrixToRemote parses arbitrary message content as the bridge does and
// derives what the network gets. Properties: nothing panics; the text is
// bounded by the decoded content's size and the HTML by the formatted body
// (not by the raw JSON's: decoding turns each byte of invalid UTF-8 into a
// three-byte U+FFFD); HTML goes out only for HTML content; a reply fallback
// never reaches the network.
func FuzzMatrixToRemote(f *testing.F) {
	seeds := []string{
		`{"msgtype":"m.text","body":"hi"}`,
		`{"msgtype":"m.text","body":"hi","format":"org.matrix.custom.html","formatted_body":"<b>hi</b>"}`,
		`{"msgtype":"m.emote","body":"waves"}`,
		`{"msgtype":"m.text","body":"> <@bob:hs> old\n\nnew","format":"org.matrix.custom.html","formatted_body":"<mx-reply><blockquote>old</blockquote></mx-reply>new","m.relates_to":{"m.in_reply_to":{"event_id":"$x"}}}`,
		`{"msgtype":"m.text","body":"> <@bob:hs> old\n\nnew","m.relates_to":{"m.in_reply_to":{"event_id":"$x"}}}`,
		`{"msgtype":"m.text","body":"* fixed","m.new_content":{"msgtype":"m.text","body":"fixed"},"m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`,
		`{"msgtype":"m.text","body":"* fixed","format":"org.matrix.custom.html","formatted_body":"* <i>fixed</i>","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}`,
		`{"msgtype":"m.text","body":"x","format":"org.matrix.custom.html","formatted_body":"   "}`,
		`{"msgtype":"m.text","body":"x","format":"org.matrix.custom.html","formatted_body":"` + strings.Repeat("<blockquote>", 100) + strings.Repeat("x<br>", 100) + `"}`,
		`{"msgtype":"m.image","body":"cat.png","url":"mxc://hs/cat","info":{"mimetype":"image/png","size":10}}`,
		`{"body":5}`, `[]`, `{"m.new_content":{"m.new_content":{"body":"deep"}}}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var c event.MessageEventContent
		if json.Unmarshal(raw, &c) != nil {
			return
		}
		decoded := len(c.Body) + len(c.FormattedBody)
		text, html := matrixText(&c)
		if len(text) > plainBound(decoded) || len(html) > len(c.FormattedBody) {
			t.Fatalf("%d bytes of content (%d of body, %d of formatted body) gave %d bytes of text and %d of HTML",
				len(raw), len(c.Body), len(c.FormattedBody), len(text), len(html))
		}
		if html != "" && c.Format != event.FormatHTML {
			t.Fatalf("HTML %q sent for content of format %q", html, c.Format)
		}
		if c.RelatesTo.GetReplyTo() != "" && event.HTMLReplyFallbackRegex.MatchString(c.FormattedBody) && event.HTMLReplyFallbackRegex.MatchString(html) {
			t.Fatalf("reply fallback reached the network: %q", html)
		}
		// An edit's text comes from m.new_content when there is one, and an
		// emote's gains "/me ".
		editHTML := len(c.FormattedBody)
		if n := c.NewContent; n != nil {
			decoded += len(n.Body) + len(n.FormattedBody)
			editHTML = len(n.FormattedBody)
		}
		etext, ehtml := editText(&c)
		if len(etext) > plainBound(decoded) || len(ehtml) > editHTML+len("/me ") {
			t.Fatalf("%d bytes of edit gave %d bytes of text and %d of HTML", len(raw), len(etext), len(ehtml))
		}
	})
}

// TestDerivedBodyBounded: an HTML-only message whose nesting would make the
// plain body explode, or vanish past the HTML parser's depth limit, gets a
// body proportionate to the HTML that still holds its words. Found by
// FuzzRemoteToMatrix.
func TestDerivedBodyBounded(t *testing.T) {
	quotes := strings.Repeat("<blockquote>", 400) + strings.Repeat("line<br>", 2000)
	deep := strings.Repeat("<ul>", 600) + "<li>deep words</li>"
	for name, html := range map[string]string{"quotes": quotes, "deep": deep} {
		c := textContent("", html)
		if len(c.Body) > plainBound(len(html)) {
			t.Errorf("%s: body of %d bytes from %d bytes of HTML", name, len(c.Body), len(html))
		}
		if !strings.Contains(c.Body, "line") && !strings.Contains(c.Body, "deep words") {
			t.Errorf("%s: body %.80q lost the text", name, c.Body)
		}
		text, _ := matrixText(&event.MessageEventContent{MsgType: event.MsgText, Body: "x", Format: event.FormatHTML, FormattedBody: html})
		if len(text) > plainBound(len(html)) || strings.TrimSpace(text) == "" {
			t.Errorf("%s: network text of %d bytes from %d bytes of HTML", name, len(text), len(html))
		}
	}
	// Ordinary HTML keeps mautrix's rendering.
	if c := textContent("", "<ul><li>one</li></ul><blockquote>q</blockquote>"); !strings.Contains(c.Body, "one") || !strings.Contains(c.Body, "> q") {
		t.Errorf("ordinary HTML body = %q", c.Body)
	}
}
