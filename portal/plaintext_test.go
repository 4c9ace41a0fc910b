package portal

import "testing"

// TestPlainBodyShowsWhatHTMLShows: the body derived from HTML says what the
// HTML shows: inline images by their alt text or "[image]", line breaks in
// text as spaces (outside <pre>), table cells apart and rows on their own
// lines. Found by a review (helper agent).
func TestPlainBodyShowsWhatHTMLShows(t *testing.T) {
	for in, want := range map[string]string{
		`<img src="mxc://x/abc" alt="">`:                                                                              "[image]",
		`<img src="mxc://x/abc" alt="cat" title="t">`:                                                                 "cat",
		"<p>see you\ntomorrow</p><pre><code>a\n  b\n</code></pre>":                                                    "see you tomorrow\n\n```\na\n  b\n```",
		"<table><caption>Cap</caption><tr><th>a</th><th>b</th></tr><tr><td>1</td><td><b>2</b></td></tr></table>after": "Cap\na | b\n1 | **2**\nafter",
		"<ul><li>one\ntwo</li></ul>":                                                                                  "* one two",
	} {
		if got := textContent("", in).Body; got != want {
			t.Errorf("%q: body %q, want %q", in, got, want)
		}
	}
}
