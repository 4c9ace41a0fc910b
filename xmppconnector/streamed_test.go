package xmppconnector

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// rosterAnswer is a roster answer to id with n items (about 70 bytes of
// markup each) and last at the end.
func rosterAnswer(id string, n int, last string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<iq type='result' id='%s' to='alice@example.org/bridge'><query xmlns='jabber:iq:roster' ver='1'>`, id)
	for i := range n {
		fmt.Fprintf(&b, `<item jid='contact%06d@example.org' subscription='both'><group>Staff</group></item>`, i)
	}
	b.WriteString(last)
	b.WriteString(`</query></iq>`)
	return b.String()
}

// The answer with a registered id has its markup bounded per tag, not as a
// whole: a 1.2 MiB roster passes a 64 KiB limit. The same answer with
// another id, or with that id a second time, or with one tag over the
// limit, is refused as before.
func TestSplitReaderBoundsStreamedAnswerPerTag(t *testing.T) {
	read := func(register, doc string) error {
		r := newSplitReader(strings.NewReader(testStreamHeader+doc), splitChunk)
		r.maxStanza = minMaxStanza
		r.answers = newStreamedAnswers()
		if register != "" {
			r.answers.add(register)
		}
		_, err := io.Copy(io.Discard, r)
		return err
	}
	roster := rosterAnswer("r1", 15_000, "")
	if len(roster) < 1<<20 {
		t.Fatalf("the roster is only %d bytes", len(roster))
	}
	if err := read("r1", roster); err != nil {
		t.Fatalf("a registered answer of %d bytes: %v", len(roster), err)
	}
	for _, c := range []struct{ name, register, doc string }{
		{"another id", "r2", roster},
		{"no id registered", "", roster},
		{"the id a second time", "r1", roster + roster},
		{"a message with the id", "r1", strings.Replace(strings.Replace(roster, "<iq ", "<message ", 1), "</iq>", "</message>", 1)},
		{"one tag over the limit", "r1", rosterAnswer("r1", 1, `<item jid='x@example.org' name='`+strings.Repeat("n", minMaxStanza)+`'/>`)},
	} {
		if err := read(c.register, c.doc); !errors.Is(err, errXMLTooLarge) {
			t.Errorf("%s: %v, want errXMLTooLarge", c.name, err)
		}
	}
	// The id in double quotes, among other attributes, is found too.
	if err := read("r3", strings.Replace(rosterAnswer("r3", 15_000, ""), `id='r3'`, `xml:lang="en" id="r3"`, 1)); err != nil {
		t.Fatalf("the id in double quotes: %v", err)
	}
}

// inRoster reads a roster over xmpp.max_stanza_size as it arrives: the
// contact at its end is found and the connection stays. Before, the
// answer ended the stream, and with it every login of an account with
// some 15,000 contacts that got a subscription request.
func TestInRosterReadsRosterOverTheLimit(t *testing.T) {
	a, _, _ := offlineAccount(t)
	conn, _ := newFakeConn(t, "alice@example.org", &recordingSink{}, func(s *fakeStanza) []string {
		if s.XMLName.Local != "iq" {
			return nil
		}
		return []string{rosterAnswer(s.attr("id"), 20_000,
			`<item jid='bob@example.org' subscription='to'/><item jid='eve@example.org' subscription='none'/>`)}
	})
	ctx := context.Background()
	for who, want := range map[string]bool{"bob@example.org": true, "eve@example.org": false, "nobody@example.org": false} {
		got, err := a.inRoster(ctx, conn, who)
		if err != nil || got != want {
			t.Fatalf("inRoster(%s) = %v, %v; want %v", who, got, err, want)
		}
	}
	if !conn.alive() {
		t.Fatalf("the roster ended the connection: %v", conn.err)
	}
}

// An error answer to a streamed request is an *iqError, as from request;
// one with more children than the whole-stanza limit would allow is read
// without keeping them (stanzaErrorEl keeps the first condition only).
func TestRequestStreamedError(t *testing.T) {
	conn, _ := newFakeConn(t, "alice@example.org", &recordingSink{}, func(s *fakeStanza) []string {
		return []string{`<iq type='error' id='` + s.attr("id") + `'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>` +
			strings.Repeat(`<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>`, 20_000) + `</error></iq>`}
	})
	req := rosterGetIQ{iqOut: newRequest("get", "")}
	called := false
	err := conn.requestStreamed(context.Background(), req, req.ID, func(*xml.Decoder) error { called = true; return nil })
	var iqErr *iqError
	if !errors.As(err, &iqErr) || iqErr.Condition != "service-unavailable" || called {
		t.Fatalf("requestStreamed = %v (read called: %v), want the service-unavailable error", err, called)
	}
	if !conn.alive() {
		t.Fatalf("the error answer ended the connection: %v", conn.err)
	}
}
