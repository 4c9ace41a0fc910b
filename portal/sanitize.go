package portal

import (
	"errors"
	"net/url"
	"regexp"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	xhtml "golang.org/x/net/html"
)

// remoteHTML is the sanitiser for HTML from the network: the tags and
// attributes the Matrix client-server spec lists for m.room.message
// formatted bodies (section "HTML" under m.room.message msgtypes), links
// only to http(s), mailto and matrix (but see tidyRemoteTree), images
// only from mxc://. A rich reply fallback (mx-reply) is the bridge's to
// write, never the network's, so it goes with all its content. The policy is built once and never changed
// after, and bluemonday policies are safe for concurrent use.
var remoteHTML = newRemoteHTMLPolicy()

var (
	hexColor     = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	safeLink     = regexp.MustCompile(`(?i)^(https?://[^/?#\s]+|mailto:|matrix:)`)
	mxcSource    = regexp.MustCompile(`^mxc://[^/\s]+/[^/\s]+$`)
	codeLanguage = regexp.MustCompile(`^language-[A-Za-z0-9_+#.-]+$`)
	linkTarget   = regexp.MustCompile(`^_(blank|self|parent|top)$`)
)

func newRemoteHTMLPolicy() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a",
		"ul", "ol", "sup", "sub", "li", "b", "i", "u", "strong", "em", "strike", "code", "hr", "br",
		"div", "table", "thead", "tbody", "tr", "th", "td", "caption", "pre", "span", "img",
		"details", "summary")
	p.AllowAttrs("data-mx-bg-color", "data-mx-color", "color").Matching(hexColor).OnElements("font")
	p.AllowAttrs("data-mx-bg-color", "data-mx-color").Matching(hexColor).OnElements("span")
	p.AllowAttrs("data-mx-spoiler").OnElements("span")
	p.AllowAttrs("name").OnElements("a")
	p.AllowAttrs("target").Matching(linkTarget).OnElements("a")
	p.AllowAttrs("href").Matching(safeLink).OnElements("a")
	p.AllowAttrs("width", "height").Matching(bluemonday.Integer).OnElements("img")
	p.AllowAttrs("alt", "title").OnElements("img")
	p.AllowAttrs("src").Matching(mxcSource).OnElements("img")
	p.AllowAttrs("start").Matching(bluemonday.Integer).OnElements("ol")
	p.AllowAttrs("class").Matching(codeLanguage).OnElements("code")
	// The per-attribute patterns above pick the scheme for each place; this
	// makes bluemonday also parse every URL and drop what does not parse.
	p.RequireParseableURLs(true)
	p.AllowURLSchemes("https", "http", "mailto", "matrix", "mxc")
	p.SkipElementsContent("mx-reply")
	return p
}

// sanitizeRemoteHTML returns html reduced to what Matrix allows, or "" when
// nothing that needs HTML is left.
func sanitizeRemoteHTML(html string) string {
	clean := remoteHTML.Sanitize(html)
	if strings.TrimSpace(clean) == "" {
		return ""
	}
	return reshapeRemoteHTML(clean)
}

// errTooLongToParse marks HTML over maxConvertBytes.
var errTooLongToParse = errors.New("HTML too long to parse")

// reshapeRemoteHTML bounds how deeply the sanitised HTML nests, as parsed
// (bluemonday keeps stray end tags, and "<blockquote></ol>" repeated nests
// as deeply as it is long while a count of tags sees nothing): elements
// deeper than maxElementDepth are unwrapped, so that no client or converter
// gets hundreds of levels from a contact. HTML the parser refuses (deeper
// than 512) keeps only its text, one <br> per line break, and so does HTML
// too long to parse (fitText would send it as plain parts anyway, see
// maxConvertBytes). HTML that needs no change is returned as it was, so
// ordinary messages keep the sanitiser's exact output.
func reshapeRemoteHTML(clean string) string {
	var body *xhtml.Node
	err := errTooLongToParse
	if len(clean) <= maxConvertBytes {
		body, err = parseBody(clean)
	}
	if err != nil {
		text := strings.TrimSpace(tokenText(clean))
		return strings.ReplaceAll(xhtml.EscapeString(text), "\n", "<br>")
	}
	tidied := tidyRemoteTree(body)
	if !flattenDeep(body, 1) && !tidied {
		return clean
	}
	return renderChildren(body)
}

// tidyRemoteTree replaces every link to a Matrix user below n with its
// text, puts the alt text (if any) of every image left without a source in
// its place, and reports whether it changed anything. Clients draw a user link as a mention pill (avatar and
// display name of the user named in the link, not the link's text), so a
// contact could otherwise show a pill of any Matrix user, the server's
// admin say, in a message that is really theirs. An image whose external
// source the sanitiser removed (a tracking pixel, say) would be drawn as a
// broken image.
func tidyRemoteTree(n *xhtml.Node) bool {
	changed := false
	for c := n.FirstChild; c != nil; {
		next := c.NextSibling
		if c.Type == xhtml.ElementNode && c.Data == "img" && attr(c, "src") == "" {
			if alt := strings.TrimSpace(attr(c, "alt")); alt != "" {
				n.InsertBefore(&xhtml.Node{Type: xhtml.TextNode, Data: alt}, c)
			}
			n.RemoveChild(c)
			changed = true
		} else if c.Type == xhtml.ElementNode && c.Data == "a" && isMatrixUserLink(attr(c, "href")) {
			// The link's text is looked at again, for links inside it.
			if first := unwrap(n, c); first != nil {
				next = first
			}
			changed = true
		} else if c.Type == xhtml.ElementNode {
			changed = tidyRemoteTree(c) || changed
		}
		c = next
	}
	return changed
}

// isMatrixUserLink reports a link that clients show as a user pill: a
// matrix: URI of a user (matrix:u/alice:example.org, MSC2312, also with an
// authority, or the early "user/" spelling), or a permalink whose fragment
// names a user (https://matrix.to/#/@alice:example.org, percent-encoded or
// not, and a client's own permalink prefix such as ".../#/user/@alice:...").
// Wider than mautrix's id.ParseMatrixURIOrMatrixToURL on purpose: that one
// knows only matrix.to hosts and well-formed URIs, while clients draw pills
// for their own permalink prefixes too, and stripping one link too many
// costs only a link.
func isMatrixUserLink(href string) bool {
	u, err := url.Parse(strings.TrimSpace(href))
	if err != nil {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "matrix":
		rest := u.Opaque
		if rest == "" {
			rest = strings.TrimPrefix(u.Path, "/")
		}
		rest = strings.ToLower(rest)
		return strings.HasPrefix(rest, "u/") || strings.HasPrefix(rest, "user/")
	case "http", "https":
		frag := strings.TrimPrefix(u.Fragment, "/")
		return strings.HasPrefix(frag, "@") || strings.HasPrefix(strings.ToLower(frag), "user/@")
	}
	return false
}

// attr is the value of n's attribute key, or "".
func attr(n *xhtml.Node, key string) string {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val
		}
	}
	return ""
}

// unwrap puts the children of c, a child of n, in its place and drops c.
// It returns the first of them (nil when c had none), so that a walk over
// n's children goes on with them.
func unwrap(n, c *xhtml.Node) *xhtml.Node {
	first := c.FirstChild
	for gc := first; gc != nil; {
		after := gc.NextSibling
		c.RemoveChild(gc)
		n.InsertBefore(gc, c)
		gc = after
	}
	n.RemoveChild(c)
	return first
}
