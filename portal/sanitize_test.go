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
		{"matrix and mailto links", `<a href="matrix:u/a:b">m</a><a href="mailto:a@b">e</a>`, `<a href="matrix:u/a:b">m</a><a href="mailto:a@b">e</a>`},
		{"mxc link is not a link", `<a href="mxc://a/b">x</a>`, `x`},
		{"data link", `<a href="data:text/html,<script>">x</a>`, `x`},
		{"relative link", `<a href="/etc/passwd">x</a>`, `x`},
		{"image from http", `<img src="https://tracker.example/p.gif" alt="a">`, `<img alt="a">`},
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
