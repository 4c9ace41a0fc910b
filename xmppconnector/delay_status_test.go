package xmppconnector

import (
	"context"
	"encoding/xml"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
)

// The sender chooses the <delay/> of a live message (XEP-0203 delay from a
// client, no from attribute, no server stamp): it becomes the event's ts
// as is, so a contact can date a message years back or ahead in the user's
// Matrix timeline, and the typing/live logic takes it for an old message.
func TestSenderChosenDelayIsNotTrusted(t *testing.T) {
	ctx := t.Context()
	const me, bob = "alice@example.org", "bob@example.org"
	a, sink, conn := caughtUpAccount(t)
	a.do(ctx, work{conn: conn, msg: &message{From: bob + "/x", To: me, ID: "d1", Type: "chat", Body: "I wrote this in 2099",
		Delay: lastDelayEl{&delayEl{Stamp: "2099-01-01T00:00:00Z"}}, StanzaIDs: []stanzaIDEl{{ID: "arch-d1", By: me}}}})
	if len(sink.sent) != 1 {
		t.Fatalf("sent %d", len(sink.sent))
	}
	if ts := time.UnixMilli(sink.sent[0].TS); ts.After(time.Now().Add(time.Hour)) {
		t.Fatalf("a live message carries ts %s, chosen by its sender", ts.UTC())
	}
}

// validatingSink refuses what the real SDK refuses.
type validatingSink struct {
	storingSink
	eph []connector.Ephemeral
}

func (s *validatingSink) SendEphemeral(_ context.Context, e *connector.Ephemeral) error {
	if err := e.Validate(); err != nil {
		return err
	}
	s.eph = append(s.eph, *e)
	return nil
}

// A status message over connector.MaxStatusMsgBytes makes the SDK refuse
// the whole presence ephemeral: the contact's coming online is dropped
// (logged at debug level) instead of the status being cut, and since the
// aggregate is recorded as changed, later presence of the same state is
// not resent either.
func TestLongStatusIsCut(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	store := openTestStore(t, filepath.Join(t.TempDir(), "c.db"))
	sink := &validatingSink{storingSink: storingSink{store: store}}
	a := newAccount(&AccountConfig{JID: me, MatrixUser: "@alice:example.org"}, &XMPPConfig{}, store, sink, "", nil, zerolog.Nop())
	conn := &xmppConn{done: make(chan struct{})}
	a.do(ctx, work{conn: conn, pres: &presence{From: "bob@example.org/x", Status: strings.Repeat("ü", 600)}})
	a.do(ctx, work{conn: conn, pres: &presence{From: "bob@example.org/x", Status: "short"}})
	if len(sink.eph) == 0 {
		t.Fatal("bob came online with a long status message: no presence reached the bridge, and the next one was not sent either")
	}
}

func TestCutUTF8(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"}, {"abc", 2, "ab"}, {"aü", 2, "a"}, {"aü", 3, "aü"}, {"ü", 1, ""}, {"€€", 5, "€"},
	} {
		if got := connector.CutBytes(c.s, c.n); got != c.want {
			t.Errorf("CutBytes(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}

// A delay our server added (offline storage) dates a message it stored,
// never later than now; one from anyone else does not, and no delay dates
// a message that did not arrive in the offline flood, whoever it names.
func TestDelayTrustedOnlyFromOurServer(t *testing.T) {
	a := newAccount(&AccountConfig{JID: "alice@example.org"}, &XMPPConfig{}, nil, nil, "", nil, zerolog.Nop())
	past := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	stamp := past.Format(time.RFC3339)
	for _, c := range []struct {
		d       *delayEl
		trusted bool
	}{
		{&delayEl{Stamp: stamp, From: "example.org"}, true},
		{&delayEl{Stamp: stamp, From: "alice@example.org"}, true},
		{&delayEl{Stamp: stamp, From: "evil.example"}, false},
		{&delayEl{Stamp: stamp, From: "bob@example.org"}, false},
		{&delayEl{Stamp: stamp}, false},
		{nil, false},
	} {
		for _, stored := range []bool{true, false} {
			before := time.Now()
			ts, delayed := a.delayTime(c.d, stored)
			want := c.trusted && stored
			if delayed != want || want && !ts.Equal(past) || !want && ts.Before(before) {
				t.Errorf("delay %+v, stored %v: ts %s, delayed %v; want trusted %v", c.d, stored, ts, delayed, want)
			}
		}
	}
	if ts, _ := a.delayTime(&delayEl{Stamp: "2099-01-01T00:00:00Z", From: "example.org"}, true); ts.After(time.Now()) {
		t.Errorf("a delay in the future gave ts %s", ts)
	}
}

// The server appends its delay to a stored message after whatever the
// sender wrote: the last one counts, whole (not one merged from both).
func TestLastDelayCounts(t *testing.T) {
	var m message
	raw := `<message xmlns="jabber:client"><delay xmlns="urn:xmpp:delay" from="example.org" stamp="2001-01-01T00:00:00Z"/>` +
		`<body>hi</body><delay xmlns="urn:xmpp:delay" from="example.org" stamp="2026-02-03T04:05:06Z"/></message>`
	if err := xml.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	if d := m.lastDelay(); d == nil || d.Stamp != "2026-02-03T04:05:06Z" {
		t.Fatalf("last delay: %+v", d)
	}
	raw = `<message xmlns="jabber:client"><delay xmlns="urn:xmpp:delay" stamp="2001-01-01T00:00:00Z"/>` +
		`<delay xmlns="urn:xmpp:delay" from="example.org"/></message>`
	m = message{}
	if err := xml.Unmarshal([]byte(raw), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m.lastDelay().time(); ok {
		t.Fatalf("a stamp of one delay was read with the from of another: %+v", m.lastDelay())
	}
}
