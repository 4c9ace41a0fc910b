package xmppconnector

import (
	"encoding/xml"
	"errors"
	"fmt"
)

// The decoder holds every token whole but character data (which
// splitReader cuts into pieces), and decoding a stanza into a struct holds
// the whole stanza: a server, or a contact through it, could make the
// connector hold a 32 MiB attribute value or element name, or a stanza of
// any size. The server's own limits (Prosody's c2s_stanza_size_limit is
// 256 KiB) bound only a server we trust, and the connector may be pointed
// at one we do not. So the connector has limits of its own, in two places:
//
//   - splitReader, which sees every byte before the decoder does, ends the
//     stream at a name, tag, comment or declaration over its limit, or a
//     stanza with more markup than xmpp.max_stanza_size, before the decoder
//     has read more than the limit of it: the decoder would hold it whole,
//     and a stream cannot go on past a token it did not read.
//   - Character data reaches the decoder in pieces, so a stanza's text
//     costs nothing until something keeps it. What decodes a stanza whole
//     reads it through a textLimit, which fails the decoding past
//     xmpp.max_stanza_size of text: that stanza is dropped with a warning
//     and the stream goes on. A vCard answer is read as it arrives instead,
//     its photo bounded on its own (vcard.go), so a contact's oversized
//     photo costs neither the connection nor the contact's name.
const (
	// defaultMaxStanza is the default of xmpp.max_stanza_size: four times
	// Prosody's default limit, room for a server's wrapping of a stanza
	// (an archived or forwarded message) and for a server that allows
	// larger ones.
	defaultMaxStanza = 1 << 20
	// maxMarkupBytes bounds one tag with its attributes (so any attribute
	// value), comment, processing instruction or declaration: each is one
	// token the decoder holds whole. JIDs, the longest attribute values in
	// use, are at most 3071 bytes.
	maxMarkupBytes = 64 << 10
	// maxNameBytes bounds one element or attribute name with its prefix.
	maxNameBytes = 1 << 10
	// minMaxStanza is the smallest xmpp.max_stanza_size accepted: below a
	// tag's limit, a stanza's start tag alone could pass it.
	minMaxStanza = maxMarkupBytes
)

// errXMLTooLarge is what every xmlLimitError is.
var errXMLTooLarge = errors.New("the XMPP server sent more XML than the connector holds")

// xmlLimits are the sizes splitReader lets through, in bytes.
type xmlLimits struct {
	stanza int // the markup of a top-level element (a stanza), or of anything else between stanzas
	markup int // a tag, comment, processing instruction or declaration
	name   int // an element or attribute name
}

func defaultXMLLimits() xmlLimits {
	return xmlLimits{stanza: defaultMaxStanza, markup: maxMarkupBytes, name: maxNameBytes}
}

// xmlLimitError ends a stream that passed a limit; the decoder returns it
// as the read error, and the session's read loop ends with it.
type xmlLimitError struct {
	what  string
	limit int
}

func (e *xmlLimitError) Error() string {
	return fmt.Sprintf("%v: %s longer than %d bytes", errXMLTooLarge, e.what, e.limit)
}

func (e *xmlLimitError) Is(target error) bool { return target == errXMLTooLarge }

// account counts b, lexed from state prev into s.state, against the
// limits of the markup and of the stanza it is part of.
func (s *splitReader) account(prev lexState) error {
	if isCharData(prev) {
		s.markup = 0 // b begins markup, if it is any
	}
	// Character data reaches the decoder in pieces (see textLimit); the
	// byte ending markup is markup.
	if !isCharData(prev) || !isCharData(s.state) {
		if s.markup++; s.markup > s.limits.markup {
			return &xmlLimitError{what: s.markupKind(), limit: s.limits.markup}
		}
		if s.held++; s.held > s.limits.stanza {
			return &xmlLimitError{what: "the markup of a stanza (xmpp.max_stanza_size)", limit: s.limits.stanza}
		}
	}
	if s.state == lexText && s.level <= 1 {
		// Between stanzas.
		s.markup, s.held = 0, 0
	}
	return nil
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
	// Or its start, "<".
	return "a tag with its attributes"
}

// nameByte counts b, part of a name in a tag, and keeps it if the name is
// the element's.
func (s *splitReader) nameByte(b byte) error {
	if s.name++; s.name > s.limits.name {
		return &xmlLimitError{what: "an element or attribute name", limit: s.limits.name}
	}
	if s.inElName {
		s.elName = append(s.elName, b)
	}
	return nil
}

// closeTag follows the element level at the '>' ending a tag: 1 is inside
// the stream header, 2 inside a stanza. A stream header read at level 1 is
// a stream restart (after SASL), not a stanza: the server opens a new
// stream without closing the old one.
func (s *splitReader) closeTag() {
	switch {
	case s.endTag:
		s.level = max(s.level-1, 0)
	case s.tail[1] == '/':
		// An empty element, <x/>.
	case s.level == 1 && isStreamHeader(s.elName):
	default:
		s.level++
	}
}

// isStreamHeader reports whether an element name (prefix:local) is a
// stream header's.
func isStreamHeader(name []byte) bool {
	local := name
	for i, b := range name {
		if b == ':' {
			local = name[i+1:]
		}
	}
	return string(local) == "stream"
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
			return nil, &xmlLimitError{what: "the text of a stanza (xmpp.max_stanza_size)", limit: l.limit}
		}
	}
	return tok, err
}
