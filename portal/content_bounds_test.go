package portal

import (
	"runtime"
	"strings"
	"testing"
	"time"

	xhtml "golang.org/x/net/html"
	"maunium.net/go/mautrix/event"
)

// allocDuring is how many bytes f allocates, and how long it takes.
func allocDuring(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, took
}

// TestPlainBodyCostBounded: formatting that the nesting guard does not count
// as line-prefixing (b, div) nested hundreds deep around a long text made
// mautrix's converter copy the text once per level (1.4 GiB for 500 levels
// around 950 KB). Found by a review (helper agent). Elements deeper than
// maxElementDepth are unwrapped and HTML longer than maxConvertBytes is not
// converted, so the cost stays bounded, in both directions.
func TestPlainBodyCostBounded(t *testing.T) {
	text := strings.Repeat("some words here ", 60_000) // 960 KB
	cases := map[string]string{
		"b×500 around 960 KB":     strings.Repeat("<b>", 500) + text,
		"div×500 around 960 KB":   strings.Repeat("<div>", 500) + text,
		"b×99 around 120 KB":      strings.Repeat("<b>", 99) + text[:120<<10],
		"div+b×450 around 120 KB": strings.Repeat("<div><b>", 225) + text[:120<<10],
		"quote+stray end×300":     strings.Repeat("<blockquote></ul>", 300) + strings.Repeat("x<br>", 20_000),
		"i×300, lines":            strings.Repeat("<i>", 300) + strings.Repeat("line<br>", 15_000),
	}
	for name, html := range cases {
		var c *event.MessageEventContent
		alloc, took := allocDuring(func() { c = textContent("", html) })
		t.Logf("%s (%d bytes): %d MiB, %v", name, len(html), alloc>>20, took)
		if alloc > 96<<20 || took > 5*time.Second {
			t.Errorf("%s (%d bytes): %d MiB allocated, %v", name, len(html), alloc>>20, took)
		}
		if !strings.Contains(c.Body, "words") && !strings.Contains(c.Body, "x") && !strings.Contains(c.Body, "line") {
			t.Errorf("%s: body %.60q lost the text", name, c.Body)
		}
		if len(c.Body) > plainBound(len(html)) {
			t.Errorf("%s: body of %d bytes from %d bytes of HTML", name, len(c.Body), len(html))
		}
		if d := treeDepth(t, c.FormattedBody); d > maxElementDepth+1 {
			t.Errorf("%s: formatted body nests %d elements deep", name, d)
		}
		alloc, took = allocDuring(func() { htmlToPlain(html) })
		if alloc > 96<<20 || took > 5*time.Second {
			t.Errorf("%s, from Matrix (%d bytes): %d MiB allocated, %v", name, len(html), alloc>>20, took)
		}
	}
}

// treeDepth is how deeply elements nest in s as parsed, below body.
func treeDepth(t *testing.T, s string) int {
	t.Helper()
	body, err := parseBody(s)
	if err != nil {
		return 513
	}
	var walk func(n *xhtmlNode, d int) int
	walk = func(n *xhtmlNode, d int) int {
		best := d
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == xhtmlElement {
				best = max(best, walk(c, d+1))
			}
		}
		return best
	}
	return walk(body, 0)
}

// TestDeepHTMLFlattened: formatting deeper than maxElementDepth loses its
// deeper levels but keeps its text, and ordinary HTML is not re-rendered.
func TestDeepHTMLFlattened(t *testing.T) {
	deep := strings.Repeat("<b>", 150) + "deep text" + strings.Repeat("</b>", 150)
	clean := sanitizeRemoteHTML(deep)
	if d := treeDepth(t, clean); d > maxElementDepth {
		t.Errorf("depth %d after sanitising", d)
	}
	if !strings.Contains(clean, "deep text") || !strings.HasPrefix(clean, "<b><b>") {
		t.Errorf("flattened HTML %.80q", clean)
	}
	if again := sanitizeRemoteHTML(clean); again != clean {
		t.Errorf("not stable: %.80q -> %.80q", clean, again)
	}
	const ordinary = `<p>a <b>b</b></p><ul><li>x</li></ul><br>`
	if got := sanitizeRemoteHTML(ordinary); got != ordinary {
		t.Errorf("ordinary HTML changed: %q", got)
	}
}

type xhtmlNode = xhtml.Node

const xhtmlElement = xhtml.ElementNode
