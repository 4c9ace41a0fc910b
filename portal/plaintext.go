package portal

import (
	"strings"

	xhtml "golang.org/x/net/html"
	"maunium.net/go/mautrix/format"
)

// maxPrefixNesting is how deeply quotes and lists may nest before the plain
// body gives up on their line markers.
const maxPrefixNesting = 16

// htmlToPlain is the plain text of an HTML body. mautrix's converter prefixes
// every line with one marker per enclosing quote or list, so deep nesting
// grows a few kilobytes of HTML into megabytes of text, in quadratic time,
// and beyond the HTML parser's nesting limit it returns nothing at all. For
// such HTML, or a result out of proportion to the HTML, the body is the
// HTML's text without markers.
func htmlToPlain(html string) string {
	stripped, depth := scanHTML(html)
	if depth > maxPrefixNesting {
		return stripped
	}
	text := format.HTMLToText(html)
	if len(text) > 2*len(html)+1024 || (strings.TrimSpace(text) == "" && strings.TrimSpace(stripped) != "") {
		return stripped
	}
	return text
}

// scanHTML returns the text of an HTML document, entities decoded, and how
// deeply line-prefixing elements nest in it. The tokenizer keeps no stack,
// so nesting costs nothing, and the text is never much longer than the input.
func scanHTML(html string) (text string, maxDepth int) {
	var b strings.Builder
	depth := 0
	z := xhtml.NewTokenizer(strings.NewReader(html))
	for {
		tt := z.Next()
		switch tt {
		case xhtml.ErrorToken:
			return b.String(), maxDepth
		case xhtml.TextToken:
			b.Write(z.Text())
		case xhtml.StartTagToken, xhtml.EndTagToken, xhtml.SelfClosingTagToken:
			name, _ := z.TagName()
			switch string(name) {
			case "br", "p", "li", "div":
				b.WriteByte('\n')
			case "blockquote", "ul", "ol", "mx-reply":
				if tt == xhtml.StartTagToken {
					depth++
					maxDepth = max(maxDepth, depth)
				} else if tt == xhtml.EndTagToken && depth > 0 {
					depth--
				}
			}
		}
	}
}
