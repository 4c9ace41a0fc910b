package xmppconnector

import (
	"iter"
	"mime"
	"net/url"
	"path"
	"slices"
	"strings"

	"mellium.im/xmpp/jid"

	"github.com/dmbridge/dmbridge/connector"
)

// bareOf returns the bare form of a JID string, "" if it is not one.
func bareOf(s string) string {
	if s == "" {
		return ""
	}
	j, err := jid.Parse(s)
	if err != nil {
		return ""
	}
	return j.Bare().String()
}

// messageContent extracts the text and attachments of a message. A reply
// quotes the original as a XEP-0428 fallback in front of the body, which
// the bridge shows its own way, so the quote is cut out; an out-of-band
// URL (XEP-0066, how HTTP uploads travel) becomes an attachment, and the
// body that merely repeats it goes.
func messageContent(m *message) (string, []connector.Attachment) {
	body := stripFallback(m.Body, m.Fallbacks, nsReply)
	var atts []connector.Attachment
	if m.OOB != nil && m.OOB.URL != "" {
		if u, err := url.Parse(m.OOB.URL); err == nil && (u.Scheme == "https" || u.Scheme == "http") {
			name := path.Base(u.Path)
			if name == "/" || name == "." {
				name = "file"
			}
			atts = append(atts, connector.Attachment{
				Name:     name,
				MimeType: mimeByName(name),
				URL:      m.OOB.URL,
			})
			if strings.TrimSpace(body) == m.OOB.URL {
				body = ""
			}
		}
	}
	return body, atts
}

func mimeByName(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// stripFallback removes the body ranges marked as fallback for ns. Each
// range only adds to a count at its two ends, and one pass over the body
// keeps the code points no range covers: marking every code point of every
// range instead cost ranges × length, about 0.4 s of CPU for one 256 KB
// stanza made of ranges that each cover a long body.
func stripFallback(body string, fbs []fallbackEl, ns string) string {
	if len(fbs) == 0 {
		return body // most messages: nothing to decode into code points
	}
	runes := []rune(body)
	open := make([]int, len(runes)+1) // ranges starting at i minus those ending there
	for start, end := range fallbackRanges(fbs, ns, len(runes)) {
		open[start]++
		open[end]--
	}
	out := make([]rune, 0, len(runes))
	depth, cut := 0, false
	for i, r := range runes {
		depth += open[i]
		if depth == 0 {
			out = append(out, r)
		} else {
			cut = true
		}
	}
	if !cut {
		return body
	}
	return strings.TrimLeft(string(out), "\n")
}

// fallbackRanges yields the non-empty ranges marked as fallback for ns,
// clipped to a body of n code points (XEP-0426 counts code points).
func fallbackRanges(fbs []fallbackEl, ns string, n int) iter.Seq2[int, int] {
	return func(yield func(int, int) bool) {
		for _, fb := range fbs {
			if fb.For != ns {
				continue
			}
			for _, b := range fb.Bodies {
				if b.Start == nil || b.End == nil {
					continue
				}
				if start, end := max(*b.Start, 0), min(*b.End, n); start < end && !yield(start, end) {
					return
				}
			}
		}
	}
}

// uniq returns the distinct values of s in first-seen order.
func uniq(s []string) []string { return firstDistinct(s, len(s)) }

// firstDistinct returns up to n distinct non-empty values of s, in
// first-seen order.
func firstDistinct(s []string, n int) []string {
	var out []string
	for _, v := range s {
		if len(out) == n {
			break
		}
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func contains(s []string, v string) bool { return slices.Contains(s, v) }
