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

// TestRemoteContentMentionsNobody: text from the network carries an empty
// m.mentions, so "@room" or the user's name in it is no mention, and a
// link to a Matrix user (which clients draw as that user's pill) becomes
// its text. Found by a review (helper agent).
func TestRemoteContentMentionsNobody(t *testing.T) {
	u := newUnit(t, false)
	u.remote(t, fromBob("m1", "@room look at this"))
	sends := u.sends()
	if m, ok := sends[len(sends)-1].Content["m.mentions"].(map[string]any); !ok || len(m) != 0 {
		t.Errorf("m.mentions = %v, want {}", sends[len(sends)-1].Content["m.mentions"])
	}
	for in, want := range map[string]string{
		`<a href="https://matrix.to/#/%40admin%3Ax">Admin</a> hi`:     `Admin hi`,
		`<a href="https://app.example/#/user/@admin:x">Admin</a>`:     `Admin`,
		`<a href="matrix://x/u/admin:x?action=chat"><b>A</b></a>`:     `<b>A</b>`,
		`<a href="https://matrix.to/#/!room:x">room</a>`:              `<a href="https://matrix.to/#/!room:x">room</a>`,
		`<a href="https://matrix.to/#/%23room:x">#room:x</a>`:         `<a href="https://matrix.to/#/%23room:x">#room:x</a>`,
		`<a href="matrix:r/room:x">room</a>`:                          `<a href="matrix:r/room:x">room</a>`,
		`<a href="https://example.org/#/@x">x</a> <a name="@x">y</a>`: `x <a name="@x">y</a>`,
	} {
		if got := sanitizeRemoteHTML(in); got != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}
