package xmppconnector

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func isVCardGet(s *fakeStanza) bool {
	return s.XMLName.Local == "iq" && strings.Contains(s.Inner, "vcard-temp")
}

// connAnsweringVCards connects alice's account a to a fake server that
// answers every vCard request at once with Eve's vCard, and ignores
// everything else; fetches counts the vCard requests.
func connAnsweringVCards(t *testing.T, a *account) (conn *xmppConn, fetches *atomic.Int64) {
	t.Helper()
	fetches = new(atomic.Int64)
	conn, _ = newFakeConn(t, "alice@example.org", a, func(s *fakeStanza) []string {
		if isVCardGet(s) {
			fetches.Add(1)
			return []string{`<iq type="result" id="` + s.attr("id") + `"><vCard xmlns="vcard-temp"><FN>Eve</FN></vCard></iq>`}
		}
		return nil
	})
	return conn, fetches
}

// A stranger whose server never answers vCard requests holds the account's
// single worker for 15 s per message (ensureContact waits for the vCard),
// and since the failed fetch stores nothing, every further message of
// theirs does the same: every other chat of the user waits behind it.
func TestUnansweredVCardDoesNotStallWorker(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const me = "alice@example.org"
	a, store, sink := strangersAccount(t)
	// The wait is what bounds the stall, whatever its length: a short one
	// keeps make unit from sitting out the production 3 s.
	a.firstProfileWait = 200 * time.Millisecond
	conn, _ := newFakeConn(t, me, a, func(s *fakeStanza) []string {
		if isVCardGet(s) {
			return nil // the remote server black-holes it
		}
		if s.XMLName.Local == "iq" {
			return []string{`<iq type="result" id="` + s.attr("id") + `"/>`}
		}
		return nil
	})
	conn.caughtUp.Store(true)
	began := time.Now()
	a.do(ctx, work{conn: conn, msg: &message{From: "spam1@evil.example/x", To: me, ID: "s1", Type: "chat", Body: "hi",
		StanzaIDs: []stanzaIDEl{{ID: "arch-s1", By: me}}}})
	took := time.Since(began)
	_, known, _ := store.Contact(ctx, me, "spam1@evil.example")
	if took > a.firstProfileWait+2*time.Second {
		t.Fatalf("one message from a stranger held the worker for %v (contact stored afterwards: %v, so the next message waits again)", took.Round(time.Second), known)
	}
	// Only the first message waits for the profile.
	began = time.Now()
	a.do(ctx, work{conn: conn, msg: &message{From: "spam1@evil.example/x", To: me, ID: "s2", Type: "chat", Body: "again",
		StanzaIDs: []stanzaIDEl{{ID: "arch-s2", By: me}}}})
	if took := time.Since(began); took > time.Second {
		t.Fatalf("the stranger's second message held the worker for %v", took.Round(time.Millisecond))
	}
	if len(sink.sent) != 2 {
		t.Fatalf("%d events sent, want both messages", len(sink.sent))
	}
}

// PEP notifications are headline messages anyone can send: each one makes
// the worker fetch the sender's vCard again, with no throttle, so a flood
// of them (or of presence with a changing XEP-0153 photo hash) is a flood
// of blocking vCard requests on the worker.
func TestHeadlineFloodDoesNotRefetchVCard(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	a, _, _ := strangersAccount(t)
	conn, fetches := connAnsweringVCards(t, a)
	const n = 200
	for i := range n {
		a.do(ctx, work{conn: conn, msg: &message{From: "eve@evil.example", To: me, ID: fmt.Sprint("h", i), Type: "headline",
			Event: &pubsubEventEl{}}})
	}
	if got := fetches.Load(); got > 5 {
		t.Fatalf("%d headlines from one stranger made %d blocking vCard requests", n, got)
	}
}

// A PEP headline (or a presence with a photo hash) from a stranger whose
// server black-holes vCard requests fails after 15 s, and do() then clears
// caughtUp for the whole connection: from then on no live message moves
// the archive cursor, until the next reconnect, whose catch-up has to page
// over everything received since (and after 30 days, past the seen-id
// retention, may bridge it again). Any stranger can trigger it.
func TestStrangerHeadlineKeepsCaughtUp(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	a, _, _ := strangersAccount(t)
	conn, _ := newFakeConn(t, me, a, func(s *fakeStanza) []string { return nil })
	conn.caughtUp.Store(true)
	a.do(ctx, work{conn: conn, msg: &message{From: "eve@evil.example", To: me, ID: "h", Type: "headline", Event: &pubsubEventEl{}}})
	if !conn.caughtUp.Load() {
		t.Fatal("a stranger's unanswered vCard made the connection forget it is caught up")
	}
}

// Past maxQueuedWork the worker's queue drops presence and headlines,
// queued or new, but never a message.
func TestQueueDropsPresenceBeforeMessages(t *testing.T) {
	a := newAccount(&AccountConfig{JID: "alice@example.org"}, &XMPPConfig{}, nil, nil, "", nil, zerolog.Nop())
	for range maxQueuedWork {
		a.enqueue(work{pres: &presence{From: "eve@evil.example/x"}})
	}
	a.enqueue(work{msg: &message{Type: "headline"}})
	if len(a.queue) != maxQueuedWork || a.dropped != 1 {
		t.Fatalf("queue %d, dropped %d; want the headline dropped", len(a.queue), a.dropped)
	}
	for range 3 {
		a.enqueue(work{msg: &message{Type: "chat", Body: "hi"}})
	}
	if len(a.queue) != 3 || a.dropped != maxQueuedWork+1 || a.droppable != 0 {
		t.Fatalf("queue %d, dropped %d, droppable %d; want only the messages left", len(a.queue), a.dropped, a.droppable)
	}
	for range maxQueuedWork {
		a.enqueue(work{msg: &message{Type: "chat", Body: "hi"}})
	}
	if len(a.queue) != maxQueuedWork+3 {
		t.Fatalf("queue %d: a message was dropped", len(a.queue))
	}
	// A subscription request is asked once: kept past the bound too.
	a.enqueue(work{pres: &presence{From: "bob@example.org", Type: "subscribe"}})
	if len(a.queue) != maxQueuedWork+4 {
		t.Fatalf("queue %d: a subscription request was dropped", len(a.queue))
	}
	// Presence the worker does not act on grows the queue no further.
	for _, typ := range []string{"subscribed", "unsubscribe", "unsubscribed", "probe", "error"} {
		a.enqueue(work{pres: &presence{From: "eve@evil.example", Type: typ}})
	}
	if len(a.queue) != maxQueuedWork+4 {
		t.Fatalf("queue %d: presence the worker ignores was kept past the bound", len(a.queue))
	}
}
