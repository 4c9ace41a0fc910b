package xmppconnector

import (
	"context"
	"encoding/xml"
	"sync"
	"sync/atomic"
)

// An answer the connector asked for may be larger than
// xmpp.max_stanza_size and still be harmless: the roster of an account with
// some 15,000 contacts (about 70 bytes of markup a contact) is one IQ
// answer over the default limit. splitReader ended the stream at it, and
// since the roster is read whenever someone asks to see the user's
// presence, and the server hands such a request over again at every login,
// every connection of that account ended there. The limit is on a stanza's
// markup because decoding one into a struct holds all of it; an answer read
// as it arrives, keeping only what it looks for, holds one token at a time.
// So the ids of such requests are registered with the splitReader before
// they are sent, and the answer with that id has its markup bounded per tag
// (each tag still within the limit) instead of as a whole.

// maxStreamedID bounds the id kept of a tag's id attribute: the
// connector's own ids are short (newID), and a longer one is not ours.
const maxStreamedID = 64

// streamedAnswers holds the ids of the requests whose answers are read as
// they arrive. The splitReader looks in it from the session's read loop;
// requests add and remove ids from other goroutines.
type streamedAnswers struct {
	n   atomic.Int32 // len(ids), so that most stanzas pass without the lock
	mu  sync.Mutex
	ids map[string]struct{}
}

func newStreamedAnswers() *streamedAnswers {
	return &streamedAnswers{ids: make(map[string]struct{})}
}

func (a *streamedAnswers) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[id]; !ok {
		a.ids[id] = struct{}{}
		a.n.Add(1)
	}
}

func (a *streamedAnswers) remove(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[id]; ok {
		delete(a.ids, id)
		a.n.Add(-1)
	}
}

// take reports whether id is registered, and removes it: an answer comes
// once, and a repeat of its id is held to the whole-stanza limit.
func (a *streamedAnswers) take(id []byte) bool {
	if a == nil || a.n.Load() == 0 || len(id) == 0 || len(id) > maxStreamedID {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ids[string(id)]; !ok {
		return false
	}
	delete(a.ids, string(id))
	a.n.Add(-1)
	return true
}

// attrNameByte follows the attribute names of a tag, as far as telling
// "id" from the rest: b is a byte of a tag after its element name and
// outside attribute values.
func (s *splitReader) attrNameByte(b byte) {
	switch {
	case b == '=':
		s.attrEq = true
	case s.attrEq:
		// Not well-formed (a name after '=' without a quote); the
		// decoder refuses it.
	case len(s.attrName) < 3:
		s.attrName = append(s.attrName, b)
	default:
		s.attrName = append(s.attrName[:0], 'x', 'x', 'x')
	}
}

// openValue is called at the quote that opens an attribute value: the
// value of a stanza's id attribute is kept, for closeTag to look up.
func (s *splitReader) openValue() {
	s.keepID = s.level == 1 && !s.endTag && s.attrEq && string(s.attrName) == "id"
	if s.keepID {
		s.idVal = s.idVal[:0]
	}
}

// valueByte keeps b, a byte of an attribute value other than its closing
// quote, if it is a stanza's id.
func (s *splitReader) valueByte(b byte) {
	if s.keepID && len(s.idVal) <= maxStreamedID {
		s.idVal = append(s.idVal, b)
	}
}

// endAttr is called after a space or a closing quote in a tag: the next
// name byte starts another attribute.
func (s *splitReader) endAttr() {
	s.attrName, s.attrEq, s.keepID = s.attrName[:0], false, false
}

// streamedStart is called at the '>' of a stanza's start tag: an IQ answer
// whose id is registered is bounded per tag from here to its end.
func (s *splitReader) streamedStart() {
	s.perTag = localName(s.elName) == "iq" && s.answers.take(s.idVal)
}

// requestStreamed is readAnswer for an answer whose markup is bounded per
// tag rather than as a whole (see above): iq's id, id, is registered with
// the splitReader until the answer has been read.
func (c *xmppConn) requestStreamed(ctx context.Context, iq any, id string, read func(d *xml.Decoder) error) error {
	if c.streamed != nil {
		c.streamed.add(id)
		defer c.streamed.remove(id)
	}
	return c.readAnswer(ctx, iq, read)
}
