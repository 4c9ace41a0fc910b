package xmppconnector

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The decoder holds every token whole but character data (which
// splitReader cuts into pieces), and decoding a stanza into a struct holds
// the whole stanza: a server, or a contact through it, could make the
// connector hold a 32 MiB attribute value or element name, or a stanza of
// any size. The server's own limits (Prosody's c2s_stanza_size_limit is
// 256 KiB) bound only a server we trust, and the connector may be pointed
// at one we do not. So the connector has a limit of its own,
// xmpp.max_stanza_size, kept in two places:
//
//   - splitReader, which sees every byte before the decoder does, ends the
//     stream at a stanza with more markup than the limit (tags with their
//     names and attribute values, comments, declarations: everything but
//     character data), or anything between stanzas that large, before the
//     decoder has read more than the limit of it: the decoder would hold
//     such a token whole, and a stream cannot go on past a token it did
//     not read. It counts the text of what is not a stanza (a stream
//     error, stream features, SASL challenges) as markup: mellium decodes
//     those itself and holds their text whole.
//   - Character data reaches the decoder in pieces, so a stanza's text
//     costs nothing until something keeps it. What decodes a stanza whole
//     reads it through a textLimit, which fails the decoding past the
//     limit: that stanza is dropped with a warning and the stream goes on.
//     A vCard answer is read as it arrives instead, its photo bounded on
//     its own (vcard.go), so a contact's oversized photo costs neither the
//     connection nor the contact's name.
//   - An IQ answer the connector reads as it arrives (the roster) has its
//     markup bounded per tag instead of as a whole (streamed.go).
//
// Names and attribute values have no lower limit of their own, although
// none in use comes near it (a JID is at most 3071 bytes): a stanza a
// contact sent stays in the server's archive, and a limit below what the
// server relays would let any contact end the connection again at every
// catch-up. With the default limit above Prosody's own (512 KiB from other
// servers), only the account's own server can end the stream this way.
const (
	// defaultMaxStanza is the default of xmpp.max_stanza_size: twice
	// Prosody's default limit for stanzas from other servers, room for the
	// server's wrapping of one (an archived or forwarded message).
	defaultMaxStanza = 1 << 20
	// minMaxStanza is the smallest xmpp.max_stanza_size accepted: a
	// stream header or a stanza's addressing must fit.
	minMaxStanza = 64 << 10
	// maxHeaderName bounds the element name kept to tell a stream header
	// ("stream:stream") from a stanza; longer ones are not headers.
	maxHeaderName = 64
)

// errXMLTooLarge is what every xmlLimitError is.
var errXMLTooLarge = errors.New("the XMPP server sent more XML than the connector holds")

// xmlLimitError is a stanza over xmpp.max_stanza_size.
type xmlLimitError struct {
	what  string
	limit int
}

func (e *xmlLimitError) Error() string {
	return fmt.Sprintf("%v: %s (xmpp.max_stanza_size %d bytes)", errXMLTooLarge, e.what, e.limit)
}

func (e *xmlLimitError) Is(target error) bool { return target == errXMLTooLarge }

// account counts weight bytes for b, lexed from state prev into s.state,
// against the limit if it is markup.
func (s *splitReader) account(prev lexState, weight int) error {
	// Character data reaches the decoder in pieces (see textLimit); the
	// byte ending markup is markup.
	switch {
	case !isCharData(prev) || !isCharData(s.state):
		if s.held += weight; s.held > s.maxStanza {
			return &xmlLimitError{what: "a stanza with more markup than the limit, cut in " + s.markupKind(), limit: s.maxStanza}
		}
	case s.notStanza != "" && s.level >= 2:
		// Text of what mellium decodes whole (see closeTag).
		if s.held += weight; s.held > s.maxStanza {
			return &xmlLimitError{what: s.notStanza + ", not a stanza, with more text and markup than the limit", limit: s.maxStanza}
		}
	}
	if s.state == lexText && (s.level <= 1 || s.perTag && prev == lexTag) {
		// Between stanzas, or at the end of a tag of an answer read as
		// it arrives (streamed.go).
		s.held = 0
	}
	return nil
}

// attrByte returns what b, in an attribute value, counts for: a reference
// counts for what it decodes to, at its ';'. That is what the decoder
// holds, and what the server counted against its own limit: Prosody
// relays a stanza as it serializes it, which writes every quote of an
// attribute value as &apos; or &quot;, so counting those six bytes would
// let a contact's 200 KiB attribute of quotes, under Prosody's 256 KiB,
// pass the default limit at 1.2 MiB and end the connection at every
// catch-up. A '&' not ended by ';' within maxRefBytes is broken XML, which
// the decoder refuses; its bytes count as they are.
func (s *splitReader) attrByte(b byte) int {
	if len(s.attrRef) == 0 {
		if b == '&' {
			s.attrRef = append(s.attrRef, b)
			return 0
		}
		return 1
	}
	s.attrRef = append(s.attrRef, b)
	n := len(s.attrRef)
	switch {
	case b == ';':
		n = refLen(s.attrRef)
	case n <= maxRefBytes && b != s.quote:
		return 0
	}
	s.attrRef = s.attrRef[:0]
	return n
}

// refLen is the length of what a reference (from '&' to ';') decodes to:
// one byte for the entities XML predefines, the UTF-8 length of a
// character reference's character, and its own length for anything else,
// which the decoder refuses.
func refLen(ref []byte) int {
	name := string(ref[1 : len(ref)-1])
	switch name {
	case "amp", "lt", "gt", "apos", "quot":
		return 1
	}
	num, numeric := strings.CutPrefix(name, "#")
	if !numeric {
		return len(ref)
	}
	radix := 10
	if hex, ok := strings.CutPrefix(num, "x"); ok {
		num, radix = hex, 16
	}
	v, err := strconv.ParseUint(num, radix, 32)
	if err != nil {
		return len(ref)
	}
	if n := utf8.RuneLen(rune(v)); n > 0 {
		return n
	}
	return len(ref)
}

func isCharData(st lexState) bool { return st == lexText || st == lexCDATA }

// markupKind names the markup being read, for the error that refuses it.
func (s *splitReader) markupKind() string {
	switch s.state {
	case lexComment, lexDeclComment:
		return "a comment"
	case lexPI:
		return "a processing instruction"
	case lexBang, lexDecl:
		return "a declaration"
	}
	return "a tag"
}

// nameByte keeps b, part of the element name of a tag, as far as a
// stream header's name could go.
func (s *splitReader) nameByte(b byte) {
	if s.inElName && len(s.elName) <= maxHeaderName {
		s.elName = append(s.elName, b)
	}
}

// closeTag follows the element level at the '>' ending a tag: 1 is inside
// the stream header, 2 inside a stanza. A stream header read at level 1 is
// a stream restart (after SASL), not a stanza: the server opens a new
// stream without closing the old one.
func (s *splitReader) closeTag() {
	switch {
	case s.endTag:
		s.level = max(s.level-1, 0)
		if s.level <= 1 {
			s.perTag = false
		}
	case s.tail[1] == '/':
		// An empty element, <x/>.
	case s.level == 1 && localName(s.elName) == "stream":
	case s.level == 1:
		// A stanza's text is bounded where the connector decodes it
		// (textLimit, vcard.go), and may be larger than its markup (a
		// vCard photo). Anything else at this level (a stream error,
		// stream features, SASL challenges) mellium decodes itself,
		// holding its text whole, so its text counts as markup does.
		switch localName(s.elName) {
		case "message", "presence", "iq":
			s.notStanza = ""
			s.streamedStart()
		case "":
			s.notStanza = "an element with a long name"
		default:
			s.notStanza = "<" + string(s.elName) + ">"
		}
		s.level++
	default:
		s.level++
	}
}

// localName is the local part of an element name (prefix:local), "" if
// nameByte cut it short.
func localName(name []byte) string {
	if len(name) > maxHeaderName {
		return ""
	}
	local := name
	for i, b := range name {
		if b == ':' {
			local = name[i+1:]
		}
	}
	return string(local)
}

// textLimit is a token reader that fails once the character data it has
// passed on is over limit bytes.
type textLimit struct {
	r     xml.TokenReader
	left  int
	limit int
}

func newTextLimit(r xml.TokenReader, limit int) *textLimit {
	return &textLimit{r: r, left: limit, limit: limit}
}

func (l *textLimit) Token() (xml.Token, error) {
	tok, err := l.r.Token()
	if cd, ok := tok.(xml.CharData); ok {
		if l.left -= len(cd); l.left < 0 {
			return nil, &xmlLimitError{what: "a stanza with more text than the limit", limit: l.limit}
		}
	}
	return tok, err
}
