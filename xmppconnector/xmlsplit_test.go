package xmppconnector

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/dmbridge/dmbridge/connector"
)

// xmlTokens is decodeTokens in a test that fails on an error.
func xmlTokens(t *testing.T, r io.Reader) ([]string, int) {
	t.Helper()
	toks, longest, err := decodeTokens(r)
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	return toks, longest
}

// decodeTokens decodes r into tokens, with adjacent character data joined
// (as decoding into a struct joins it), and returns the longest single
// character data token it read.
func decodeTokens(r io.Reader) ([]string, int, error) {
	d := xml.NewDecoder(r)
	var out []string
	longest := 0
	text, inText := "", false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		if cd, ok := tok.(xml.CharData); ok {
			longest = max(longest, len(cd))
			text, inText = text+string(cd), true
			continue
		}
		if inText {
			out = append(out, "text:"+text)
			text, inText = "", false
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			s := "start:" + tok.Name.Space + " " + tok.Name.Local
			for _, a := range tok.Attr {
				s += " " + a.Name.Space + ":" + a.Name.Local + "=" + a.Value
			}
			out = append(out, s)
		case xml.EndElement:
			out = append(out, "end:"+tok.Name.Local)
		case xml.Comment:
			out = append(out, "comment:"+string(tok))
		case xml.ProcInst:
			out = append(out, "pi:"+tok.Target+" "+string(tok.Inst))
		case xml.Directive:
			out = append(out, "directive:"+string(tok))
		}
	}
	if inText {
		out = append(out, "text:"+text)
	}
	return out, longest, nil
}

// Split streams mean what the stream meant, token for token, with no run
// of character data longer than the chunk (plus a reference or character
// it would not cut), whatever the chunk and however the bytes arrive.
func TestSplitReaderKeepsMeaning(t *testing.T) {
	body := "a&amp;b&lt;c&#x263A;d ü€😀 \r\n\r\nline\r" + strings.Repeat("x", 50) + "&quot;]]&gt;"
	docs := []string{
		`<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='1'>` +
			`<message from='b@x/r' to='a@x' id="q'q" xml:lang='en'><body>` + body + `</body><x a='1>2'/></message>` +
			"\n\t " +
			`<iq type='result' id='v'><vCard xmlns='vcard-temp'><FN>Eve</FN><PHOTO><BINVAL>` +
			strings.Repeat(strings.Repeat("QUFB", 19)+"\r\n", 40) + `</BINVAL></PHOTO></vCard></iq>` +
			`</stream:stream>`,
		`<r><![CDATA[raw <b> ] ]] ]]]><!-- a - comment --><?pi inst?>` + body + `<![CDATA[` + strings.Repeat("é]", 40) + `]]></r>`,
		`<!DOCTYPE r [<!ENTITY e "v">]><r a="x>y" b='z'>` + strings.Repeat("ü", 100) + `</r>`,
	}
	for i, doc := range docs {
		want, _ := xmlTokens(t, strings.NewReader(doc))
		for _, chunk := range []int{1, 2, 3, 7, 64} {
			for _, oneByte := range []bool{false, true} {
				var r io.Reader = strings.NewReader(doc)
				if oneByte {
					r = iotest.OneByteReader(r)
				}
				got, longest := xmlTokens(t, newSplitReader(r, chunk))
				if !slices.Equal(got, want) {
					t.Fatalf("doc %d, chunk %d, one byte at a time %v: tokens\n got %q\nwant %q", i, chunk, oneByte, got, want)
				}
				if limit := chunk + maxRefBytes + 4; longest > limit {
					t.Errorf("doc %d, chunk %d: a character data token of %d bytes", i, chunk, longest)
				}
			}
		}
	}
}

// A read error comes after the bytes read with it.
func TestSplitReaderPassesErrors(t *testing.T) {
	boom := errors.New("boom")
	r := newSplitReader(iotest.DataErrReader(io.MultiReader(strings.NewReader("<a>text</a>"), iotest.ErrReader(boom))), 2)
	got, err := io.ReadAll(r)
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if want := "<a>te<![CDATA[]]>xt</a>"; string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// FuzzSplitReader: any document the decoder reads, it reads the same
// split, whatever the chunk.
func FuzzSplitReader(f *testing.F) {
	f.Add(`<a b='>'>x&amp;y<![CDATA[z]]]]><?p q?></a>`, 1)
	f.Add(`<r>`+strings.Repeat("é]", 10)+`<![CDATA[`+strings.Repeat("]é", 10)+`]]></r>`, 2)
	f.Add(`<r><!---> x --><!-- y --></r>`, 1)
	f.Add(`<!DOCTYPE r [<!-- ] ' --><!ENTITY e "<>">]><r a='x>y'>z</r>`, 1)
	f.Add(`<s><iq id='x' type="result"><q><i j='a'/></q></iq><iq id="x"/></s>`, 3)
	f.Fuzz(func(t *testing.T, doc string, chunk int) {
		if chunk < 1 || chunk > 100 {
			return
		}
		want, _, err := decodeTokens(strings.NewReader(doc))
		if err != nil {
			return
		}
		// With an answer registered, so that the id tracking runs too.
		r := newSplitReader(strings.NewReader(doc), chunk)
		r.answers = newStreamedAnswers()
		r.answers.add("x")
		got, _, err := decodeTokens(r)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("chunk %d: %v\n got %q\nwant %q", chunk, err, got, want)
		}
	})
}

// On real Prosody: a body several pieces long (splitChunk), with
// references and characters of every UTF-8 length where the pieces may
// end, reaches the bridge whole through the connector's split stream.
func TestLongBodyArrivesWholeThroughSplitStream(t *testing.T) {
	t.Parallel()
	e, bob := startWithBob(t)
	// Escaped, under Prosody's stanza limit (256 KiB).
	body := strings.Repeat("a<b & c>d ü€😀\n", 2*splitChunk/20)
	bob.SendChat(t, e.alice, body, "")
	ev := e.bridge.waitEvent(t, "the long message", func(ev *connector.Event) bool { return ev.Kind == connector.KindMessage })
	if ev.Text != body {
		t.Fatalf("a %d-byte body arrived as %d bytes", len(body), len(ev.Text))
	}
}

// Comments and declarations end where the decoder ends them: "<!--->" does
// not close the comment it opens (the "--" is the opening's), and in a
// declaration's internal subset a comment may hold a quote or a bracket
// and nested declarations are matched by '<' and '>'. A splitReader that
// ended them elsewhere cut what the decoder reads as a comment's "-->" or
// an attribute value, and a valid document no longer decoded.
func TestSplitReaderFollowsCommentsAndDeclarations(t *testing.T) {
	long := strings.Repeat("y", 10)
	docs := []string{
		`<r><!---> x --></r>`,
		`<r><!---> <![CDATA[ -->` + long + `<a/>]]&gt;</r>`,
		`<!DOCTYPE r [<!-- ] ' -->]><r a='x>` + long + `'/>`,
		`<!DOCTYPE r [<!ELEMENT r ANY><!ATTLIST r a CDATA "]">]><r a='x>` + long + `'>` + long + `</r>`,
	}
	for i, doc := range docs {
		want, _ := xmlTokens(t, strings.NewReader(doc))
		for _, chunk := range []int{1, 2, 3} {
			got, _, err := decodeTokens(newSplitReader(strings.NewReader(doc), chunk))
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("doc %d, chunk %d: %v\n got %q\nwant %q", i, chunk, err, got, want)
			}
		}
	}
}

// Once the stream was refused at the limit, the end of the stream is
// preceded by a policy-violation stream error, once; before that, the end
// goes alone.
func TestSplitConnTellsServerWhy(t *testing.T) {
	endAfter := func(over bool) string {
		cli, srv := net.Pipe()
		defer cli.Close()
		c := newSplitConn(cli, minMaxStanza)
		go func() {
			doc := testStreamHeader + `<message><body>hi</body></message>`
			if over {
				doc += `<message a='` + strings.Repeat("a", minMaxStanza) + `'/>`
			}
			_, _ = io.WriteString(srv, doc)
			_ = srv.Close()
		}()
		if _, err := io.Copy(io.Discard, c); over != errors.Is(err, errXMLTooLarge) {
			t.Fatalf("over the limit %v: read error %v", over, err)
		}
		cli2, srv2 := net.Pipe()
		c.Conn = cli2
		got := make(chan string)
		go func() { b, _ := io.ReadAll(srv2); got <- string(b) }()
		for range 2 {
			if _, err := c.Write([]byte(streamEnd)); err != nil {
				t.Fatal(err)
			}
		}
		_ = cli2.Close()
		return <-got
	}
	if got := endAfter(false); got != streamEnd+streamEnd {
		t.Fatalf("without a refusal: %q", got)
	}
	want := fmt.Sprintf(limitStreamError, minMaxStanza) + streamEnd + streamEnd
	if got := endAfter(true); got != want {
		t.Fatalf("after a refusal: %q, want %q", got, want)
	}
}
