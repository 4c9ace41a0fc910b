package portal

import (
	"context"
	"strings"

	xhtml "golang.org/x/net/html"
	"maunium.net/go/mautrix/format"
)

const (
	// maxPrefixNesting is how deeply quotes and lists may nest before the
	// plain body gives up on their line markers.
	maxPrefixNesting = 16
	// maxElementDepth is how deeply any elements may nest in HTML that is
	// converted or posted: mautrix's converter copies the text once per
	// level (formatting marks, trimming), so 500 levels of <b> or <div>
	// around a long text cost gigabytes. Deeper elements are unwrapped:
	// their text stays, their formatting goes.
	maxElementDepth = 100
	// maxConvertBytes is the most HTML handed to an HTML parser and to
	// mautrix's converter. A text that long is split into plain parts or
	// sent as a file anyway (longtext.go), which carry no formatting, so a
	// longer one gets the HTML's text without markers.
	maxConvertBytes = 128 << 10
)

// plainParser is mautrix's default text converter (format.HTMLToText),
// except for images: those gave nothing, so a message of only an inline
// picture had "nothing that can be shown" as its body.
var plainParser = &format.HTMLParser{
	TabsToSpaces:   4,
	Newline:        "\n",
	HorizontalLine: "\n---\n",
	PillConverter:  format.DefaultPillConverter,
	ImageConverter: func(_, alt, title, _, _ string, _ bool) string { return imageText(alt, title) },
}

// imageText stands for an image in plain text: its alt text, else its
// title, else "[image]".
func imageText(alt, title string) string {
	if alt = strings.TrimSpace(alt); alt != "" {
		return alt
	}
	if title = strings.TrimSpace(title); title != "" {
		return title
	}
	return "[image]"
}

// htmlToPlain is the plain text of an HTML body. mautrix's converter prefixes
// every line with one marker per enclosing quote or list, so deep nesting
// grows a few kilobytes of HTML into megabytes of text, in quadratic time,
// and beyond the HTML parser's nesting limit it returns nothing at all. The
// nesting is measured on the parsed tree, as the converter will see it
// (stray end tags such as "</ol>" closing nothing do not lower it). For HTML
// nested too deeply, too long, or whose text comes out out of proportion to
// it, the body is the HTML's text without markers.
func htmlToPlain(html string) string {
	if len(html) > maxConvertBytes {
		return tokenText(html)
	}
	body, err := parseBody(html)
	if err != nil {
		return tokenText(html)
	}
	stripped := nodeText(body)
	if prefixDepth(body, 0) > maxPrefixNesting {
		return stripped
	}
	flattenDeep(body, 1)
	prepareForText(body, false)
	// The converter parses a string: it gets the prepared tree. (The bound
	// below is of the HTML as it came: the rendered tree closes every
	// element and is longer.)
	limit := 2*len(html) + 1024
	html = renderChildren(body)
	text := plainParser.Parse(html, format.NewContext(context.Background()))
	if len(text) > limit || (strings.TrimSpace(text) == "" && strings.TrimSpace(stripped) != "") {
		return stripped
	}
	return text
}

// parseBody parses html as the HTML parser (and so mautrix) does and
// returns the body element holding its content.
func parseBody(html string) (*xhtml.Node, error) {
	doc, err := xhtml.Parse(strings.NewReader(html))
	if err != nil {
		return nil, err
	}
	for n := doc.FirstChild; n != nil; n = n.NextSibling {
		if n.Type != xhtml.ElementNode || n.Data != "html" {
			continue
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type == xhtml.ElementNode && c.Data == "body" {
				return c, nil
			}
		}
	}
	// The parser always makes html and body; never reached in practice.
	body := &xhtml.Node{Type: xhtml.ElementNode, Data: "body"}
	return body, nil
}

// prefixDepth is how deeply quotes and lists nest below n.
func prefixDepth(n *xhtml.Node, depth int) int {
	if n.Type == xhtml.ElementNode && (n.Data == "blockquote" || n.Data == "ul" || n.Data == "ol") {
		depth++
	}
	best := depth
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		best = max(best, prefixDepth(c, depth))
	}
	return best
}

// flattenDeep unwraps every element below n nested deeper than
// maxElementDepth (n's children are at depth): its children take its place.
// Empty elements (br, img, hr) stay, as they nest nothing. It reports
// whether anything changed; the work is linear in the tree's size.
func flattenDeep(n *xhtml.Node, depth int) bool {
	changed := false
	for c := n.FirstChild; c != nil; {
		next := c.NextSibling
		switch {
		case c.Type != xhtml.ElementNode || c.FirstChild == nil:
		case depth > maxElementDepth:
			// Its children, now at this depth, are looked at next.
			next, changed = unwrap(n, c), true
		default:
			changed = flattenDeep(c, depth+1) || changed
		}
		c = next
	}
	return changed
}

// prepareForText makes mautrix's converter write what the HTML shows:
//   - a line break inside text shows as a space, but the converter deletes
//     it ("see you\ntomorrow" became "see youtomorrow"), so outside <pre>
//     it becomes a space here;
//   - table cells ran together ("ab12" for a two-by-two table): a table
//     becomes its rows, one a line, its cells separated by " | ".
func prepareForText(n *xhtml.Node, inPre bool) {
	if n.Type == xhtml.TextNode {
		if !inPre {
			n.Data = strings.ReplaceAll(n.Data, "\n", " ")
		}
		return
	}
	inPre = inPre || (n.Type == xhtml.ElementNode && n.Data == "pre")
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		prepareForText(c, inPre)
	}
	if n.Type == xhtml.ElementNode && n.Data == "table" {
		flattenTable(n)
	}
}

// flattenTable turns table t (whose inner tables are flattened already)
// into a div holding its caption and rows as lines, cells separated by
// " | ". The converter wraps a div in line breaks as it did the table.
func flattenTable(t *xhtml.Node) {
	var lines [][]*xhtml.Node // each line's nodes
	var cells func(n *xhtml.Node)
	cells = func(n *xhtml.Node) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != xhtml.ElementNode {
				continue
			}
			switch c.Data {
			case "caption":
				lines = append(lines, []*xhtml.Node{c})
			case "tr":
				var row []*xhtml.Node
				for cell := c.FirstChild; cell != nil; cell = cell.NextSibling {
					if cell.Type == xhtml.ElementNode && (cell.Data == "td" || cell.Data == "th") {
						if len(row) > 0 {
							row = append(row, &xhtml.Node{Type: xhtml.TextNode, Data: " | "})
						}
						cell.Data = "span" // inline: a cell's text stays on its row's line
						row = append(row, cell)
					}
				}
				lines = append(lines, row)
			case "thead", "tbody", "tfoot":
				cells(c)
			}
		}
	}
	cells(t)
	for c := t.FirstChild; c != nil; c = t.FirstChild {
		t.RemoveChild(c)
	}
	t.Data, t.DataAtom, t.Attr = "div", 0, nil
	for i, line := range lines {
		if i > 0 {
			t.AppendChild(&xhtml.Node{Type: xhtml.ElementNode, Data: "br"})
		}
		for _, node := range line {
			if node.Parent != nil {
				node.Parent.RemoveChild(node)
			}
			if node.Type == xhtml.ElementNode && node.Data == "caption" {
				node.Data = "span"
			}
			t.AppendChild(node)
		}
	}
}

// renderChildren renders n's children as HTML.
func renderChildren(n *xhtml.Node) string {
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		_ = xhtml.Render(&b, c) // a strings.Builder does not fail
	}
	return b.String()
}

// lineBreaking are the elements whose start and end begin a new line in the
// text without markers.
var lineBreaking = map[string]bool{
	"br": true, "p": true, "li": true, "div": true, "tr": true, "blockquote": true, "pre": true,
	"table": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true, "h6": true, "hr": true,
}

// nodeText is the text below n without markers: text nodes, and a line
// break where a block starts or ends. Consecutive breaks are written once,
// so the text is never much longer than the HTML.
func nodeText(n *xhtml.Node) string {
	var b strings.Builder
	var walk func(n *xhtml.Node)
	newline := func() {
		if s := b.String(); len(s) > 0 && s[len(s)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	walk = func(n *xhtml.Node) {
		switch n.Type {
		case xhtml.TextNode:
			b.WriteString(n.Data)
			return
		case xhtml.ElementNode:
			if n.Data == "img" {
				b.WriteString(imageText(attr(n, "alt"), attr(n, "title")))
				return
			}
			if n.Data == "td" || n.Data == "th" {
				b.WriteByte(' ')
			}
			if lineBreaking[n.Data] {
				newline()
				defer newline()
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// tokenText is the text of HTML too long or too deep to parse into a tree:
// the tokenizer keeps no stack, so it costs time linear in the input and
// the text is never much longer than the input.
func tokenText(html string) string {
	var b strings.Builder
	z := xhtml.NewTokenizer(strings.NewReader(html))
	for {
		tt := z.Next()
		switch tt {
		case xhtml.ErrorToken:
			return b.String()
		case xhtml.TextToken:
			b.Write(z.Text())
		case xhtml.StartTagToken, xhtml.EndTagToken, xhtml.SelfClosingTagToken:
			name, _ := z.TagName()
			if lineBreaking[string(name)] {
				b.WriteByte('\n')
			}
		}
	}
}
