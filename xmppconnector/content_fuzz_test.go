package xmppconnector

import (
	"encoding/xml"
	"net/url"
	"strings"
	"testing"
)

// stripFallbackByMarking is the plain reading of XEP-0426 that
// stripFallback must agree with: mark each code point of each range, keep
// the rest.
func stripFallbackByMarking(body string, fbs []fallbackEl, ns string) string {
	runes := []rune(body)
	covered := make([]bool, len(runes))
	cut := false
	for start, end := range fallbackRanges(fbs, ns, len(runes)) {
		for i := start; i < end; i++ {
			covered[i], cut = true, true
		}
	}
	if !cut {
		return body
	}
	var out []rune
	for i, r := range runes {
		if !covered[i] {
			out = append(out, r)
		}
	}
	return strings.TrimLeft(string(out), "\n")
}

// FuzzInboundMessage feeds message stanzas as a contact's server could
// send them through what the connector reads of them: nothing may panic,
// the fallback cut must agree with the plain reading, and an attachment
// only ever comes from an http(s) URL.
func FuzzInboundMessage(f *testing.F) {
	for _, seed := range []string{
		`<message xmlns="jabber:client" from="bob@x/r" type="chat" id="1"><body>hi</body></message>`,
		`<message xmlns="jabber:client" from="bob@x/r" type="chat"><body>&gt; héllo wo
answer</body><reply xmlns="urn:xmpp:reply:0" to="a@x" id="9"/><fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0"><body start="0" end="11"/></fallback></message>`,
		`<message xmlns="jabber:client"><body>abcdef</body><fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0"><body start="4" end="2"/><body start="-3" end="99"/><body start="1" end="3"/><body start="2" end="5"/></fallback></message>`,
		`<message xmlns="jabber:client"><body>https://up.example/f/cat.png</body><x xmlns="jabber:x:oob"><url>https://up.example/f/cat.png</url></x></message>`,
		`<message xmlns="jabber:client"><x xmlns="jabber:x:oob"><url>file:///etc/passwd</url></x><composing xmlns="http://jabber.org/protocol/chatstates"/></message>`,
		`<message xmlns="jabber:client"><received xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="2026-01-02T03:04:05Z"/><message xmlns="jabber:client" from="bob@x"><body>x</body><stanza-id xmlns="urn:xmpp:sid:0" by="a@x" id="s1"/></message></forwarded></received></message>`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m message
		if err := xml.Unmarshal(raw, &m); err != nil {
			return
		}
		for _, msg := range []*message{&m, nested(m.Received), nested(m.Sent)} {
			if msg == nil {
				continue
			}
			body, atts := messageContent(msg)
			want := stripFallbackByMarking(msg.Body, msg.Fallbacks, nsReply)
			if len(atts) > 0 && strings.TrimSpace(want) == msg.OOB.URL {
				want = "" // the body only repeated the attachment's URL
			}
			if body != want {
				t.Fatalf("fallback cut %q, plain reading %q", body, want)
			}
			for _, a := range atts {
				if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
					t.Fatalf("attachment from %q", a.URL)
				}
			}
			_ = msg.chatState()
			_ = msg.stanzaID("a@x")
			_, _ = msg.lastDelay().time()
		}
	})
}

func nested(c *carbonEl) *message {
	if c == nil {
		return nil
	}
	return c.Forwarded.Message
}

// BenchmarkStripFallbackManyRanges: one 256 KB stanza of fallback ranges
// over a long body, the shape that made the cut cost ranges × length.
func BenchmarkStripFallbackManyRanges(b *testing.B) {
	var s strings.Builder
	s.WriteString(`<message xmlns="jabber:client"><body>` + strings.Repeat("a", 120000))
	s.WriteString(`</body><fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:reply:0">`)
	for s.Len() < 256<<10 {
		s.WriteString(`<body start="0" end="999999"/>`)
	}
	s.WriteString(`</fallback></message>`)
	var m message
	if err := xml.Unmarshal([]byte(s.String()), &m); err != nil {
		b.Fatal(err)
	}
	b.Run("counted", func(b *testing.B) {
		for b.Loop() {
			stripFallback(m.Body, m.Fallbacks, nsReply)
		}
	})
	b.Run("marked", func(b *testing.B) {
		for b.Loop() {
			stripFallbackByMarking(m.Body, m.Fallbacks, nsReply)
		}
	})
}
