package xmppconnector

// A scripted XMPP server on a net.Pipe, for tests that need
// conn.request / queryArchive without Prosody.

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"mellium.im/xmpp"
	"mellium.im/xmpp/jid"
	"mellium.im/xmpp/stream"
)

// fakeStanza is one top-level element the client wrote.
type fakeStanza struct {
	XMLName xml.Name
	Attrs   []xml.Attr `xml:",any,attr"`
	Inner   string     `xml:",innerxml"`
}

func (s *fakeStanza) attr(name string) string {
	for _, a := range s.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// fakeServer answers every stanza the client writes with handler's output
// (raw XML, written back in order). A nil handler answers IQs with an
// empty result.
type fakeServer struct {
	conn    net.Conn
	mu      sync.Mutex
	handler func(s *fakeStanza) []string
	got     []fakeStanza
	// wmu orders writes. Answers are written off the reading goroutine:
	// a client that stopped reading at an oversized answer writes its
	// stream's close, and a net.Pipe takes it only while this side reads.
	wmu     sync.Mutex
	answers chan []string
}

func (f *fakeServer) write(raw string) {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	// In pieces: a net.Pipe takes no string, and converting a huge answer
	// at once would count as the connector's allocation in tests that
	// measure it.
	buf := make([]byte, min(len(raw), 64<<10))
	for len(raw) > 0 {
		n := copy(buf, raw)
		if _, err := f.conn.Write(buf[:n]); err != nil {
			return
		}
		raw = raw[n:]
	}
}

// newFakeConn returns an xmppConn of login talking to a fakeServer.
func newFakeConn(t *testing.T, login string, sink stanzaSink, handler func(s *fakeStanza) []string) (*xmppConn, *fakeServer) {
	t.Helper()
	cli, srv := net.Pipe()
	origin := jid.MustParse(login + "/bridge")
	header := `<stream:stream xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams" from="` +
		origin.Domain().String() + `" to="` + origin.String() + `" id="1" version="1.0">`
	split := newSplitReader(io.MultiReader(strings.NewReader(header), cli), splitChunk)
	split.answers = newStreamedAnswers()
	rw := struct {
		io.Reader
		io.Writer
	}{split, cli} // read as login's streams are
	neg := func(ctx context.Context, in, out *stream.Info, s *xmpp.Session, data interface{}) (xmpp.SessionState, io.ReadWriter, interface{}, error) {
		r := s.TokenReader()
		defer r.Close()
		tok, err := r.Token()
		if err != nil {
			return 0, nil, nil, err
		}
		if start, ok := tok.(xml.StartElement); ok {
			_ = in.FromStartElement(start)
		}
		in.XMLNS = "jabber:client"
		out.XMLNS = "jabber:client"
		return xmpp.Ready, nil, nil, nil
	}
	fs := &fakeServer{conn: srv, handler: handler, answers: make(chan []string, 1024)}
	go func() {
		for out := range fs.answers {
			for _, o := range out {
				fs.write(o)
			}
		}
	}()
	go func() {
		defer close(fs.answers)
		d := xml.NewDecoder(srv)
		for {
			tok, err := d.Token()
			if err != nil {
				return
			}
			start, ok := tok.(xml.StartElement)
			if !ok {
				continue
			}
			var st fakeStanza
			if err := d.DecodeElement(&st, &start); err != nil {
				return
			}
			fs.mu.Lock()
			fs.got = append(fs.got, st)
			h := fs.handler
			fs.mu.Unlock()
			var out []string
			if h != nil {
				out = h(&st)
			} else if st.XMLName.Local == "iq" && (st.attr("type") == "get" || st.attr("type") == "set") {
				out = []string{fmt.Sprintf(`<iq type="result" id="%s"/>`, st.attr("id"))}
			}
			fs.answers <- out
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := xmpp.NewSession(ctx, origin.Domain(), origin, rw, xmpp.Secure|xmpp.Authn, neg)
	if err != nil {
		t.Fatalf("fake session: %v", err)
	}
	c := newConn(sess, login, sink, 0, zerolog.Nop())
	c.streamed = split.answers
	t.Cleanup(func() { _ = cli.Close(); _ = srv.Close() })
	return c, fs
}

// archiveResult is one MAM result message for queryid.
func archiveResult(queryID, archiveID, inner string) string {
	return `<message xmlns="jabber:client"><result xmlns="urn:xmpp:mam:2" queryid="` + queryID + `" id="` + archiveID +
		`"><forwarded xmlns="urn:xmpp:forward:0"><delay xmlns="urn:xmpp:delay" stamp="2026-01-02T03:04:05Z"/>` +
		inner + `</forwarded></result></message>`
}

// mamQueryID reads the queryid of a MAM query IQ, "" if it is none.
func mamQueryID(s *fakeStanza) string {
	var q struct {
		Query *struct {
			QueryID string `xml:"queryid,attr"`
		} `xml:"urn:xmpp:mam:2 query"`
	}
	_ = xml.Unmarshal([]byte("<x>"+s.Inner+"</x>"), &q)
	if q.Query == nil {
		return ""
	}
	return q.Query.QueryID
}

// fakeArchive is an ordered MAM archive the fake server pages through.
type fakeArchive struct {
	mu    sync.Mutex
	ids   []string
	inner map[string]string
}

func (a *fakeArchive) add(id, inner string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.inner == nil {
		a.inner = map[string]string{}
	}
	a.ids = append(a.ids, id)
	a.inner[id] = inner
}

// answer serves a MAM query (RSM after / before-last / max), or returns
// nil for any other stanza.
func (a *fakeArchive) answer(s *fakeStanza) []string {
	qid := mamQueryID(s)
	if qid == "" {
		return nil
	}
	var q struct {
		Set struct {
			Max    int     `xml:"max"`
			After  *string `xml:"after"`
			Before *string `xml:"before"`
		} `xml:"query>set"`
	}
	_ = xml.Unmarshal([]byte("<x>"+s.Inner+"</x>"), &q)
	a.mu.Lock()
	defer a.mu.Unlock()
	lo, hi := 0, len(a.ids)
	if q.Set.After != nil && *q.Set.After != "" {
		i := indexOf(a.ids, *q.Set.After)
		if i < 0 {
			return []string{`<iq type="error" id="` + s.attr("id") + `"><error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>`}
		}
		lo = i + 1
	}
	max := q.Set.Max
	if max <= 0 {
		max = 100
	}
	var sel []string
	if q.Set.Before != nil {
		if *q.Set.Before != "" {
			hi = indexOf(a.ids, *q.Set.Before)
		}
		sel = a.ids[max0(hi-max):hi]
	} else {
		sel = a.ids[lo:min(len(a.ids), lo+max)]
	}
	var out []string
	for _, id := range sel {
		out = append(out, archiveResult(qid, id, a.inner[id]))
	}
	complete := q.Set.Before == nil && lo+len(sel) >= len(a.ids) || q.Set.Before != nil && max0(hi-max) == 0
	first, last := "", ""
	if len(sel) > 0 {
		first, last = sel[0], sel[len(sel)-1]
	}
	out = append(out, fmt.Sprintf(`<iq type="result" id="%s"><fin xmlns="urn:xmpp:mam:2" complete="%v"><set xmlns="http://jabber.org/protocol/rsm"><first>%s</first><last>%s</last></set></fin></iq>`,
		s.attr("id"), complete, first, last))
	return out
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func max0(n int) int { return max(n, 0) }
