package xmppconnector

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// encoding/xml, which mellium reads the stream with, returns a run of
// character data as one token, and holds all of it in a buffer that it
// grows by doubling while it reads: a contact's 24 MiB vCard photo (32 MiB
// of base64) cost some 130 MiB of allocation before the connector saw a
// byte of it, and the buffer kept its size for the rest of the connection.
// No reader above the decoder can stop that. So the bytes the decoder
// reads are passed through splitReader first, which breaks every run of
// character data longer than splitChunk into pieces by inserting an empty
// CDATA section (<![CDATA[]]>), or, inside a CDATA section, by closing and
// reopening it. That changes nothing the XML means: both are character
// data, which decoding into a struct joins again, and readVCard joins as
// it counts. A piece never ends inside a character, a reference (&amp;)
// or a CR LF pair, so every piece decodes as the whole did. The stream
// comes from our own server, which writes the markup itself, so a small
// lexer that tells text from tags is enough; a stream it misreads was
// broken XML already, which the decoder refuses either way.
const splitChunk = 64 << 10

// lexState is where in the XML the next byte is.
type lexState int

const (
	lexText        lexState = iota
	lexMarkup               // just after '<'
	lexTag                  // in a start or end tag
	lexBang                 // after "<!": a comment, CDATA section or declaration
	lexComment              // <!-- ... -->
	lexCDATA                // <![CDATA[ ... ]]>
	lexPI                   // <? ... ?>
	lexDecl                 // <!DOCTYPE ...>
	lexDeclComment          // <!-- ... --> inside a declaration
)

const (
	cdataOpen  = "[CDATA["
	emptyCDATA = "<![CDATA[]]>"
	cdataSplit = "]]><![CDATA["
	// maxRefBytes is longer than any reference; a '&' without a ';' by
	// then is broken XML, and splitting may go on.
	maxRefBytes = 32
)

// splitReader is an io.Reader over an XML stream that splits long
// character data (see splitChunk) and refuses a stanza with too much
// markup (see xmllimit.go).
type splitReader struct {
	r     io.Reader
	chunk int
	in    []byte
	out   []byte // processed bytes; out[pos:] are not read yet
	pos   int
	err   error // from r, returned once out is drained

	state lexState
	run   int  // character data bytes since the last split or markup
	ref   int  // bytes of the reference being read; 0 outside one
	quote byte // the quote of the attribute value being read, or 0
	depth int  // of '<' in a declaration (its internal subset)
	// declOpen is how much of "<!--" a declaration has shown since its
	// last '<' (1 after the '<'), 0 outside such a start.
	declOpen int
	// dashes counts the '-' just read in a comment: "-->" ends it only
	// after two of its own, not the "--" that opened it ("<!--->" does
	// not end there).
	dashes int
	bang   []byte  // bytes after "<!", until they tell what follows
	tail   [2]byte // the last two bytes, for terminators

	// What the limit is counted on (xmllimit.go).
	maxStanza int    // bytes of markup in a stanza
	level     int    // of elements: 1 inside the stream header, 2 in a stanza
	held      int    // bytes of markup of the stanza (or other item) being read
	endTag    bool   // the tag being read is an end tag
	inElName  bool   // the element name of the tag is being read
	elName    []byte // its start, up to maxHeaderName bytes
	attrRef   []byte // the reference being read in an attribute value
	// notStanza names the element at level 2 if it is not a stanza, whose
	// text counts against the limit (see closeTag); "" for a stanza.
	notStanza string

	// Answers read as they arrive (streamed.go): the registered ids, and
	// what is kept of a tag's attributes to find them.
	answers  *streamedAnswers
	attrName []byte // the start of the attribute name being read
	attrEq   bool   // its '=' was read
	keepID   bool   // the value being read is a stanza's id
	idVal    []byte // that value, up to maxStreamedID bytes and one
	perTag   bool   // the stanza being read is bounded per tag

	// overLimit is set once the stream was refused at a limit (read by
	// splitConn's writers).
	overLimit atomic.Bool
}

func newSplitReader(r io.Reader, chunk int) *splitReader {
	return &splitReader{r: r, chunk: chunk, in: make([]byte, 4096), maxStanza: defaultMaxStanza}
}

func (s *splitReader) Read(p []byte) (int, error) {
	for s.pos == len(s.out) {
		if s.err != nil {
			return 0, s.err
		}
		n, err := s.r.Read(s.in)
		s.out, s.pos = s.out[:0], 0
		for _, b := range s.in[:n] {
			// The bytes before one over a limit are passed on: they may
			// end stanzas that came with it.
			if lerr := s.step(b); lerr != nil {
				err = lerr
				s.overLimit.Store(true)
				break
			}
		}
		s.err = err
	}
	n := copy(p, s.out[s.pos:])
	s.pos += n
	return n, nil
}

// step passes one byte on, after whatever must be inserted before it, or
// refuses it as past a limit.
func (s *splitReader) step(b byte) error {
	prev := s.state
	weight := 1 // what b counts for against the limit, if markup
	switch s.state {
	case lexText:
		if b == '<' {
			s.state, s.run, s.ref = lexMarkup, 0, 0
			break
		}
		if s.run >= s.chunk && s.ref == 0 && splittable(b) {
			s.out = append(s.out, emptyCDATA...)
			s.run = 0
		}
		s.run++
		switch {
		case b == '&':
			s.ref = 1
		case b == ';' || s.ref > maxRefBytes:
			s.ref = 0
		case s.ref > 0:
			s.ref++
		}
	case lexMarkup:
		switch b {
		case '!':
			s.state, s.bang = lexBang, s.bang[:0]
		case '?':
			s.state = lexPI
		default:
			s.state, s.quote = lexTag, 0
			s.endTag, s.inElName, s.elName, s.attrRef = b == '/', true, s.elName[:0], s.attrRef[:0]
			s.endAttr()
			s.idVal = s.idVal[:0]
			if !s.endTag {
				s.nameByte(b)
			}
		}
	case lexTag:
		switch {
		case s.quote != 0:
			weight = s.attrByte(b)
			if b == s.quote {
				s.quote = 0
				s.endAttr()
			} else {
				s.valueByte(b)
			}
		case b == '"' || b == '\'':
			s.quote = b
			s.openValue()
		case b == '>':
			s.state = lexText
			s.closeTag()
		case isXMLSpace(b) || b == '/':
			if !s.inElName {
				s.endAttr()
			}
			s.inElName = false
		case s.inElName:
			s.nameByte(b)
		default:
			s.attrNameByte(b)
		}
	case lexBang:
		s.bang = append(s.bang, b)
		switch k := string(s.bang); {
		case k == "--":
			s.state, s.dashes = lexComment, 0
		case k == cdataOpen:
			s.state, s.run, s.tail = lexCDATA, 0, [2]byte{}
		case len(k) <= len(cdataOpen) && k == cdataOpen[:len(k)], k == "-":
		default:
			// The decoder takes this first byte as the declaration's
			// name, not as a quote or bracket.
			s.state, s.quote, s.depth, s.declOpen = lexDecl, 0, 0, 0
		}
	case lexComment:
		if s.endsComment(b) {
			s.state = lexText
		}
	case lexCDATA:
		// Not inside the terminator "]]>": before its second ']' or its
		// '>'. After any ']' is fine: "x]" + "]]>" ends the section at
		// the last "]]>", keeping "x]".
		if s.run >= s.chunk && !(s.tail[1] == ']' && (b == ']' || b == '>')) && splittable(b) {
			s.out = append(s.out, cdataSplit...)
			s.run = 0
		}
		s.run++
		if s.tail == [2]byte{']', ']'} && b == '>' {
			s.state, s.run = lexText, 0
		}
	case lexPI:
		if s.tail[1] == '?' && b == '>' {
			s.state = lexText
		}
	case lexDecl:
		s.stepDecl(b)
	case lexDeclComment:
		if s.endsComment(b) {
			s.state = lexDecl
		}
	}
	if err := s.account(prev, weight); err != nil {
		return err
	}
	s.tail = [2]byte{s.tail[1], b}
	s.out = append(s.out, b)
	return nil
}

// endsComment follows a comment to its "-->".
func (s *splitReader) endsComment(b byte) bool {
	if b == '>' && s.dashes >= 2 {
		return true
	}
	if b == '-' {
		s.dashes++
	} else {
		s.dashes = 0
	}
	return false
}

// stepDecl follows a declaration to its end as encoding/xml does: the '>'
// outside quotes that closes its '<', whose nested '<' (the internal
// subset's declarations) are matched by '>', quoted ones aside, and whose
// comments are skipped whole (a quote in one opens nothing).
func (s *splitReader) stepDecl(b byte) {
	if s.declOpen > 0 {
		if b == "!--"[s.declOpen-1] {
			if s.declOpen++; s.declOpen == 4 {
				s.state, s.declOpen, s.dashes = lexDeclComment, 0, 0
			}
			return
		}
		// A '<' of a nested declaration; b is read as any other byte.
		s.declOpen = 0
		s.depth++
	}
	switch {
	case s.quote != 0:
		if b == s.quote {
			s.quote = 0
		}
	case b == '"' || b == '\'':
		s.quote = b
	case b == '>' && s.depth == 0:
		s.state = lexText
	case b == '>':
		s.depth--
	case b == '<':
		s.declOpen = 1
	}
}

// splittable reports whether a piece may end before b: not inside a UTF-8
// sequence (b a continuation byte), nor between CR and LF, which the
// decoder turns into one newline only when they are in one piece.
func splittable(b byte) bool {
	return b&0xC0 != 0x80 && b != '\n'
}

// splitConn is a connection whose reads go through a splitReader.
type splitConn struct {
	net.Conn
	r    *splitReader
	told atomic.Bool // the stream error was written (see Write)
}

// newSplitConn reads c through a splitReader that refuses a stanza with
// more than maxStanza bytes of markup (0 for the default).
func newSplitConn(c net.Conn, maxStanza int) *splitConn {
	r := newSplitReader(c, splitChunk)
	if maxStanza > 0 {
		r.maxStanza = maxStanza
	}
	r.answers = newStreamedAnswers()
	return &splitConn{Conn: c, r: r}
}

func (c *splitConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write passes p on. Once the stream was refused at a limit, the end of
// the stream that follows is preceded by a stream error saying why
// (policy-violation, RFC 6120 4.9.3.12): mellium writes its own stream
// error (undefined-condition) to a buffer that it does not flush before it
// writes the end of the stream to the connection, so the server would
// never learn why the connection ended.
func (c *splitConn) Write(p []byte) (int, error) {
	if c.r.overLimit.Load() && string(p) == streamEnd && c.told.CompareAndSwap(false, true) {
		if _, err := c.Conn.Write([]byte(fmt.Sprintf(limitStreamError, c.r.maxStanza))); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(p)
}

const (
	// streamEnd is how mellium ends its stream, in one write.
	streamEnd = "</stream:stream>"
	// limitStreamError is the stream error sent before it after a stanza
	// over the limit; the stream header declared the stream prefix.
	limitStreamError = `<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>` +
		`<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>a stanza is larger than this client accepts (xmpp.max_stanza_size, %d bytes)</text></stream:error>`
)

// ConnectionState is the TLS state of the connection underneath, which
// mellium looks for; empty on a connection without TLS.
func (c *splitConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}
