package xmppconnector

import (
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// repeatByte is an endless stream of one byte: a hostile server's
// attribute value or name, made as it is read and never held whole.
type repeatByte byte

func (b repeatByte) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

const (
	testStreamHeader = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1' version='1.0'>`
	hostileSize      = 32 << 20
)

// hostile is hostileSize bytes of fill between before and after, made as
// they are read.
func hostile(before string, fill io.Reader, after string) io.Reader {
	return io.MultiReader(strings.NewReader(before), io.LimitReader(fill, hostileSize), strings.NewReader(after))
}

// Every token the decoder would hold whole, and a stanza's markup, is refused
// once it passes the limit, after reading no more than the limit (and one
// read of the source) of it: a hostile server's 32 MiB attribute value or
// element name is not passed on to the decoder, which would hold it all.
func TestSplitReaderRefusesOversizedXML(t *testing.T) {
	const readSlack = 8 << 10 // a read of the source, and the header
	cases := []struct {
		name string
		src  io.Reader
	}{
		{"attribute value", hostile(testStreamHeader+`<message to='a@x' id='`, repeatByte('a'), `'/>`)},
		{"element name", hostile(testStreamHeader+`<message><x`, repeatByte('x'), `/></message>`)},
		{"attribute name", hostile(testStreamHeader+`<message a`, repeatByte('a'), `='1'/>`)},
		{"many attributes", hostile(testStreamHeader+`<message`, repeatOf(` a='1'`), `/>`)},
		{"comment between stanzas", hostile(testStreamHeader+`<!--`, repeatByte('c'), `-->`)},
		{"elements in a stanza", hostile(testStreamHeader+`<message>`, repeatOf(`<x a='1'/>`), `</message>`)},
		{"elements between text", hostile(testStreamHeader+`<message>`, repeatOf(`<x/>text`), `</message>`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingReader{r: tc.src}
			_, err := io.Copy(io.Discard, newSplitReader(src, splitChunk))
			if !errors.Is(err, errXMLTooLarge) {
				t.Fatalf("read %d bytes of a %d MiB %s, ending with %v; want it refused as too large", src.n, hostileSize>>20, tc.name, err)
			}
			t.Logf("refused after %d bytes: %v", src.n, err)
			// The text between elements is not counted.
			limit := int64(defaultMaxStanza)
			if tc.name == "elements between text" {
				limit *= 2
			}
			if src.n < limit || src.n > limit+readSlack {
				t.Fatalf("refused after reading %d bytes; the limit is %d", src.n, defaultMaxStanza)
			}
		})
	}
}

// repeatString is an endless repetition of s, each read going on where
// the last one stopped, so that the pattern stays whole.
type repeatString struct {
	s   string
	off int
}

func repeatOf(s string) *repeatString { return &repeatString{s: s} }

func (r *repeatString) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m := copy(p[n:], r.s[r.off:])
		n += m
		r.off = (r.off + m) % len(r.s)
	}
	return n, nil
}

// A reference in an attribute value counts for what it decodes to, which
// is what the decoder holds and what the server counted: Prosody writes
// every quote as &apos; or &quot;, so a value under its limit arrives up
// to six times as long. A hostile server still cannot pass the limit with
// references: the longest character (&#x10FFFF;, four bytes) counts four,
// and a '&' that never ends counts as it is.
func TestSplitReaderCountsReferencesAsDecoded(t *testing.T) {
	quotes := testStreamHeader + `<message a='` + strings.Repeat("&apos;", defaultMaxStanza-1024) + `'/>`
	if _, err := io.Copy(io.Discard, newSplitReader(strings.NewReader(quotes), splitChunk)); err != nil {
		t.Fatalf("%d bytes of &apos; (%d decoded): %v", len(quotes), defaultMaxStanza-1024, err)
	}
	const readSlack = 8 << 10
	for _, tc := range []struct {
		name string
		src  io.Reader
		max  int64 // raw bytes read at most before the refusal
	}{
		{"four-byte characters", hostile(testStreamHeader+`<message a='`, repeatOf("&#x10FFFF;"), `'/>`), defaultMaxStanza / 4 * 10},
		{"a reference that never ends", hostile(testStreamHeader+`<message a='&`, repeatByte('a'), `;'/>`), defaultMaxStanza},
		{"quotes", hostile(testStreamHeader+`<message a="`, repeatOf("&quot;"), `"/>`), defaultMaxStanza * 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &countingReader{r: tc.src}
			_, err := io.Copy(io.Discard, newSplitReader(src, splitChunk))
			if !errors.Is(err, errXMLTooLarge) {
				t.Fatalf("read %d bytes, ending with %v; want it refused as too large", src.n, err)
			}
			t.Logf("refused after %d bytes", src.n)
			if src.n > tc.max+readSlack {
				t.Fatalf("refused after reading %d bytes, over %d", src.n, tc.max)
			}
		})
	}
}

// Many stanzas, each under the limit, and whitespace between them (a
// server's keepalives), add up to nothing: only one stanza is bounded, and
// only its markup (16 KiB here), not its text (100 KiB). Nor does a stream
// restart, whose new header is not a stanza.
func TestSplitReaderLimitIsPerStanza(t *testing.T) {
	stanza := `<message from='b@x/r'><body>` + strings.Repeat("x", 100<<10) + `</body>` + strings.Repeat("<x/>", 4<<10) + `</message>` + "\n "
	doc := testStreamHeader + `<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>` + testStreamHeader +
		strings.Repeat(stanza, 30) + `</stream:stream>`
	r := newSplitReader(strings.NewReader(doc), splitChunk)
	r.maxStanza = minMaxStanza
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("3 MiB of 100 KiB stanzas: %v", err)
	}
}

// recordingSink keeps the messages a connection received.
type recordingSink struct {
	mu   sync.Mutex
	msgs []*message
}

func (s *recordingSink) onMessage(_ *xmppConn, m *message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
}

func (s *recordingSink) onPresence(*xmppConn, *presence) {}

func (s *recordingSink) received() []*message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*message(nil), s.msgs...)
}

// A message with a 32 MiB attribute value from the server ends the stream
// with errXMLTooLarge: the connection reads little more than the limit of
// it and allocates a few MiB, where before it read and decoded all of it
// (the decoder growing one buffer to hold the value whole).
// Not parallel: the allocation count is the whole process's.
func TestConnRefusesOversizedAttribute(t *testing.T) {
	sink := &recordingSink{}
	conn, fs := newFakeConn(t, "alice@example.org", sink, nil)
	src := &countingReader{r: hostile(`<message from='eve@evil.example/r' type='chat' id='`, repeatByte('a'), `'><body>hi</body></message>`)}
	allocated := feedHostile(t, conn, fs, src, "a message with a 32 MiB attribute")
	if !errors.Is(conn.err, errXMLTooLarge) {
		t.Fatalf("the stream ended with %v, want errXMLTooLarge", conn.err)
	}
	if n := len(sink.received()); n != 0 {
		t.Fatalf("%d messages passed on from an oversized stanza", n)
	}
	if src.n > defaultMaxStanza+64<<10 {
		t.Fatalf("read %d bytes of the stanza before refusing it", src.n)
	}
	if allocated > 8<<20 {
		t.Fatalf("allocated %d MiB for a stanza refused after %d bytes", allocated>>20, src.n)
	}
}

// feedHostile has the fake server write src, what, to conn until the
// stream ends, and returns what the process allocated meanwhile; a stream
// that takes all of src and goes on fails the test.
func feedHostile(t *testing.T, conn *xmppConn, fs *fakeServer, src *countingReader, what string) uint64 {
	t.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	written := make(chan error, 1)
	go func() {
		_, err := io.Copy(fs.conn, src)
		written <- err
	}()
	ended, wrote := true, false
	select {
	case <-conn.done:
	case <-written:
		wrote = true
		// Everything went through; the stream may still end late.
		select {
		case <-conn.done:
		case <-time.After(5 * time.Second):
			ended = false
		}
	case <-time.After(waitLong):
		t.Fatalf("the connection neither ended nor took %s", what)
	}
	runtime.ReadMemStats(&after)
	_ = fs.conn.Close()
	if !wrote {
		<-written
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	if !ended {
		t.Fatalf("the connection took all %d bytes of %s, allocating %d MiB, and kept going", src.n, what, allocated>>20)
	}
	t.Logf("stream ended after %d bytes of %s, %d KiB allocated: %v", src.n, what, allocated>>10, conn.err)
	return allocated
}

// Messages under the limit still pass, a large one among them, and the
// stream goes on.
func TestConnTakesLargeMessageUnderLimit(t *testing.T) {
	sink := &recordingSink{}
	conn, fs := newFakeConn(t, "alice@example.org", sink, nil)
	for _, size := range []int{200 << 10, defaultMaxStanza - 1<<10} {
		body := strings.Repeat("ü", size/2)
		fs.write(`<message from='bob@example.org/r' type='chat' id='m'><body>` + body + `</body></message>`)
		deadline := time.Now().Add(waitLong)
		for len(sink.received()) == 0 && time.Now().Before(deadline) && conn.alive() {
			time.Sleep(10 * time.Millisecond)
		}
		got := sink.received()
		if !conn.alive() {
			t.Fatalf("a %d-byte body ended the stream: %v", len(body), conn.err)
		}
		if len(got) != 1 || got[0].Body != body {
			t.Fatalf("a %d-byte body: %d messages", len(body), len(got))
		}
		sink.mu.Lock()
		sink.msgs = nil
		sink.mu.Unlock()
	}
}

// A message with 32 MiB of text is dropped (only its addresses are passed
// on, for a stand-in: see oversized.go), and the stream goes on: text
// reaches the decoder in pieces, and decoding the message stops at the
// limit (textLimit), so a contact's oversized message costs neither memory
// nor the connection. Before, the message was decoded whole and passed on,
// allocating some 100 MiB. Not parallel: the allocation count is the
// whole process's.
func TestConnDropsMessageWithOversizedText(t *testing.T) {
	sink := &recordingSink{}
	conn, fs := newFakeConn(t, "alice@example.org", sink, nil)
	src := hostile(`<message from='eve@evil.example/r' type='chat' id='big'><body>`, repeatByte('b'), `</body></message>`)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := io.Copy(fs.conn, src); err != nil {
		t.Fatalf("the connection stopped reading the message: %v", err)
	}
	fs.write(`<message from='bob@example.org/r' type='chat' id='small'><body>after</body></message>`)
	deadline := time.Now().Add(waitLong)
	for len(sink.received()) < 2 && time.Now().Before(deadline) && !hasID(sink.received(), "small") {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d KiB allocated for a message with %d MiB of text", allocated>>10, hostileSize>>20)
	if !conn.alive() {
		t.Fatalf("the stream ended: %v", conn.err)
	}
	for _, m := range sink.received() {
		if m.ID == "big" && (!m.tooLarge || m.Body != "") {
			t.Fatalf("a message with %d MiB of text was passed on as %d bytes of text, not as too large", hostileSize>>20, len(m.Body))
		}
	}
	if !hasID(sink.received(), "small") {
		t.Fatalf("the message after the oversized one did not arrive")
	}
	if allocated > 16<<20 {
		t.Fatalf("allocated %d MiB for a message dropped at %d bytes of text", allocated>>20, defaultMaxStanza)
	}
}

func hasID(msgs []*message, id string) bool {
	for _, m := range msgs {
		if m.ID == id {
			return true
		}
	}
	return false
}

// What is not a stanza (a stream error, stream features, a SASL
// challenge) mellium decodes itself, holding its text whole: a stream
// error with 32 MiB of text is refused after the limit like a stanza with
// too much markup, not read and held.
// Not parallel: the allocation count is the whole process's.
func TestConnRefusesOversizedStreamError(t *testing.T) {
	conn, fs := newFakeConn(t, "alice@example.org", &recordingSink{}, nil)
	src := &countingReader{r: hostile(`<stream:error><undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/><text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>`,
		repeatByte('t'), `</text></stream:error>`)}
	allocated := feedHostile(t, conn, fs, src, "a stream error with 32 MiB of text")
	if !errors.Is(conn.err, errXMLTooLarge) {
		t.Errorf("the stream ended with %v, want errXMLTooLarge", conn.err)
	}
	if src.n > defaultMaxStanza+64<<10 || allocated > 8<<20 {
		t.Fatalf("read %d bytes of the stream error and allocated %d MiB", src.n, allocated>>20)
	}
}
