package portal

import (
	"strings"
	"testing"
)

func TestSanitizeRemoteHTML(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"allowed formatting stays", `<b>bold</b> <i>it</i> <code class="language-go">x</code>`, `<b>bold</b> <i>it</i> <code class="language-go">x</code>`},
		{"script goes with its content", `hi<script>alert(1)</script>`, `hi`},
		{"event handlers go", `<b onclick="x()">b</b><img src="mxc://a/b" onerror="x()">`, `<b>b</b><img src="mxc://a/b">`},
		{"javascript link", `<a href="javascript:alert(1)">x</a>`, `x`},
		{"https link", `<a href="https://example.org/a?b=c">x</a>`, `<a href="https://example.org/a?b=c">x</a>`},
		{"matrix and mailto links", `<a href="matrix:r/a:b">m</a><a href="mailto:a@b">e</a>`, `<a href="matrix:r/a:b">m</a><a href="mailto:a@b">e</a>`},
		// A user link would show as that user's pill: it keeps its text only.
		{"matrix user links", `<a href="matrix:u/a:b">m</a> <a href="https://matrix.to/#/@a:b">n</a>`, `m n`},
		{"mxc link is not a link", `<a href="mxc://a/b">x</a>`, `x`},
		{"data link", `<a href="data:text/html,<script>">x</a>`, `x`},
		{"relative link", `<a href="/etc/passwd">x</a>`, `x`},
		{"link without a host", `<a href="http://">x</a>`, `x`},
		// An image without its source would show as a broken one: its alt text stays.
		{"image from http", `<img src="https://tracker.example/p.gif" alt="a">`, `a`},
		{"tracking image", `hi <img src="https://tracker.example/p.gif" alt=""> there`, `hi  there`},
		{"image from mxc", `<img src="mxc://server/id" width="10" height="20" alt="a" title="t">`, `<img src="mxc://server/id" width="10" height="20" alt="a" title="t">`},
		{"mx-reply and its content go", `<mx-reply><blockquote>forged quote</blockquote></mx-reply>real`, `real`},
		{"style and iframe", `<style>body{}</style><iframe src="https://x"></iframe><p style="color:red">p</p>`, `<p>p</p>`},
		{"colours must be hex", `<font color="#ff0000" data-mx-bg-color="red">f</font><span data-mx-color="#00ff00" data-mx-spoiler="why">s</span>`, `<font color="#ff0000">f</font><span data-mx-color="#00ff00" data-mx-spoiler="why">s</span>`},
		{"ol start integer", `<ol start="3"><li>x</li></ol><ol start="x"><li>y</li></ol>`, `<ol start="3"><li>x</li></ol><ol><li>y</li></ol>`},
		{"code class other than language", `<code class="evil">c</code>`, `<code>c</code>`},
		{"unknown attributes on allowed tags", `<div id="x" class="y">d</div><table border="1"><tr><td>c</td></tr></table>`, `<div>d</div><table><tr><td>c</td></tr></table>`},
		{"details and summary", `<details><summary>s</summary>body</details>`, `<details><summary>s</summary>body</details>`},
		{"nothing left", `<script>x</script>`, ``},
	}
	for _, c := range cases {
		if got := sanitizeRemoteHTML(c.in); got != c.want {
			t.Errorf("%s:\n in  %s\n got %s\nwant %s", c.name, c.in, got, c.want)
		}
	}
}

func TestTextContentSanitises(t *testing.T) {
	c := textContent("", `<mx-reply>quoted</mx-reply><b>hi</b><script>x</script>`)
	if c.FormattedBody != "<b>hi</b>" || !strings.Contains(c.Body, "hi") || strings.Contains(c.Body, "quoted") || c.Format == "" {
		t.Errorf("content = %+v", c)
	}
	c = textContent("plain", `<script>alert(1)</script>`)
	if c.FormattedBody != "" || c.Format != "" || c.Body != "plain" {
		t.Errorf("content with nothing left = %+v", c)
	}
	if strings.Contains(textContent("", `<a href="javascript:x">l</a>`).FormattedBody, "javascript") {
		t.Error("javascript link survived")
	}
}

// FuzzSanitizeRemoteHTML checks properties that must hold for any input:
// no script, no event handler, no javascript: attribute, no mx-reply, and a
// second pass changes nothing (the output is already what Matrix allows).
func FuzzSanitizeRemoteHTML(f *testing.F) {
	for _, seed := range []string{
		`<b>x</b>`, `<script>alert(1)</script>`, `<a href="javascript:x">l</a>`, `<img src=x onerror=alert(1)>`,
		`<mx-reply><a href="https://matrix.to">q</a></mx-reply>t`, `<a href="  JaVaScRiPt:x">l</a>`,
		`<svg><script>x</script></svg>`, `<math><mi xlink:href="javascript:x">m</mi></math>`,
		`<a href="java&#x09;script:x">l</a>`, `<<script>script>x<</script>/script>`, `<font color="#fff000" onclick=x>f</font>`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := sanitizeRemoteHTML(in)
		lower := strings.ToLower(out)
		for _, bad := range []string{"<script", "<mx-reply", `="javascript:`, "<iframe", "<style", "<svg", " on"} {
			if bad == " on" {
				// An attribute named on*: look only inside tags.
				if strings.Contains(lower, "<") && hasEventHandler(lower) {
					t.Fatalf("event handler survived: %q -> %q", in, out)
				}
				continue
			}
			if strings.Contains(lower, bad) {
				t.Fatalf("%q survived: %q -> %q", bad, in, out)
			}
		}
		if again := sanitizeRemoteHTML(out); again != out {
			t.Fatalf("not stable: %q -> %q -> %q", in, out, again)
		}
	})
}

// hasEventHandler reports an on...= attribute inside a tag of s.
func hasEventHandler(s string) bool {
	inTag := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '<':
			inTag = true
		case '>':
			inTag = false
		case ' ', '\t', '\n', '/':
			if inTag && strings.HasPrefix(s[i+1:], "on") {
				rest := strings.TrimLeft(s[i+3:], "abcdefghijklmnopqrstuvwxyz")
				if strings.HasPrefix(rest, "=") {
					return true
				}
			}
		}
	}
	return false
}
