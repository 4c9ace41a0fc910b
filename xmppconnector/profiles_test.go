package xmppconnector

import (
	"fmt"
	"testing"
	"time"
)

// Announced changes of one contact are fetched at most once per
// profileRefreshEvery; one announced in between is fetched at its end.
func TestProfileRefreshIsThrottledNotLost(t *testing.T) {
	p := newProfileFetches()
	t0 := time.Now()
	p.request("eve@x", true, t0)
	if who, _, ok := p.next(t0); !ok || who != "eve@x" {
		t.Fatalf("next = %q, %v; want eve@x", who, ok)
	}
	for range 200 {
		p.request("eve@x", true, t0)
	}
	p.done("eve@x", false, t0)
	if who, wait, ok := p.next(t0.Add(time.Second)); ok || wait <= 0 || wait > profileRefreshEvery {
		t.Fatalf("next = %q, %v, %v; want a wait of at most %v", who, wait, ok, profileRefreshEvery)
	}
	if who, _, ok := p.next(t0.Add(profileRefreshEvery)); !ok || who != "eve@x" {
		t.Fatalf("the change announced meanwhile was not fetched at the interval's end: %q, %v", who, ok)
	}
	if _, wait, ok := p.next(t0.Add(profileRefreshEvery)); ok || wait != 0 {
		t.Fatal("more than one deferred refresh queued")
	}
}

// A failed fetch is remembered: no fetch of that JID for profileRetryAfter.
func TestProfileFailureIsRemembered(t *testing.T) {
	p := newProfileFetches()
	t0 := time.Now()
	p.request("spam@x", false, t0)
	p.next(t0)
	if !p.request("spam@x", false, t0) {
		t.Fatal("a request during the first fetch was refused")
	}
	if _, _, ok := p.next(t0); ok {
		t.Fatal("a second first fetch was queued while the first ran")
	}
	p.done("spam@x", true, t0)
	if p.request("spam@x", false, t0.Add(time.Minute)) || p.request("spam@x", true, t0.Add(time.Minute)) {
		t.Fatal("a JID whose fetch just failed was queued again")
	}
	if !p.request("spam@x", false, t0.Add(profileRetryAfter)) {
		t.Fatal("no retry after profileRetryAfter")
	}
}

// The pending queue is bounded; a first fetch (someone wrote) displaces a
// refresh, a refresh displaces nothing.
func TestProfileQueueBound(t *testing.T) {
	p := newProfileFetches()
	t0 := time.Now()
	for i := range maxPendingProfiles {
		if !p.request(fmt.Sprintf("r%d@x", i), true, t0) {
			t.Fatalf("request %d refused", i)
		}
	}
	if p.request("one-more@x", true, t0) {
		t.Fatal("a refresh past the bound was queued")
	}
	if !p.request("writer@x", false, t0) {
		t.Fatal("a first fetch was refused because of queued refreshes")
	}
	if len(p.queue) != maxPendingProfiles || p.state["r0@x"].queued {
		t.Fatalf("queue holds %d, r0 queued %v; want the bound and the oldest refresh displaced", len(p.queue), p.state["r0@x"].queued)
	}
}

// With the fetcher running, a flood of PEP headlines from one contact
// makes one vCard request, and the first message of an unknown contact
// waits for its contact event from the fetcher (which answers at once).
func TestProfileFetcherOnFakeServer(t *testing.T) {
	ctx := t.Context()
	const me = "alice@example.org"
	a, store, sink := strangersAccount(t)
	conn, fetches := connAnsweringVCards(t, a)
	a.conn = conn
	go a.fetchProfiles(ctx)
	a.do(ctx, work{conn: conn, msg: &message{From: "eve@evil.example/x", To: me, ID: "m1", Type: "chat", Body: "hi",
		StanzaIDs: []stanzaIDEl{{ID: "arch-m1", By: me}}}})
	waitUntil(t, func() bool {
		_, known, _ := store.Contact(ctx, me, "eve@evil.example")
		return known
	})
	before := fetches.Load()
	for i := range 200 {
		ev := &pubsubEventEl{}
		ev.Items.Node = nsVCard4
		a.do(ctx, work{conn: conn, msg: &message{From: "eve@evil.example", To: me, ID: fmt.Sprint("h", i), Type: "headline", Event: ev}})
	}
	waitUntil(t, func() bool { return fetches.Load() > before })
	time.Sleep(100 * time.Millisecond)
	if got := fetches.Load() - before; got != 1 {
		t.Fatalf("200 headlines made %d vCard requests within the refresh interval, want 1", got)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	// The server answered at once: the contact came before the message,
	// so that the bridge's ghost joins the new DM already named.
	if len(sink.sent) != 2 || sink.sent[1].Text != "hi" || sink.sent[0].Contact == nil || sink.sent[0].Contact.Name != "Eve" {
		t.Fatalf("sent %+v; want Eve's contact, then the message", sink.sent)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	waitWithin(t, 5*time.Second, "the condition", cond)
}

// waitWithin waits up to timeout for cond, what it waits for.
func waitWithin(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
