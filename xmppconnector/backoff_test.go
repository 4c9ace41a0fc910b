package xmppconnector

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// The wait grows while connections end at xmpp.max_stanza_size, and once
// a connection ends for another reason (it lived, say, for hours after the
// stanza left the archive), the next login is tried as soon as after any
// lost connection, not after the wait the oversized stanza had built up.
func TestBackoffResetsOnceConnectionsEndForOtherReasons(t *testing.T) {
	const minDelay, maxDelay = time.Second, time.Minute
	b := newBackoff(minDelay, maxDelay)
	overLimit := fmt.Errorf("reading: %w", &xmlLimitError{what: "a stanza", limit: defaultMaxStanza})
	for range 8 {
		b.loggedIn()
		if !b.ended(overLimit) {
			t.Fatal("a connection ended at the limit is not told apart")
		}
		b.next()
	}
	b.loggedIn()
	if b.ended(io.EOF) {
		t.Fatal("a connection lost is taken for one ended at the limit")
	}
	if wait := b.next(); wait > minDelay {
		t.Fatalf("after a connection that ended for another reason, the next login waits %v; want at most %v", wait, minDelay)
	}

	// While connections still end at the limit, logins that work do not
	// shorten the wait.
	b = newBackoff(minDelay, maxDelay)
	endAtLimit(b, 9)
	if wait := b.next(); wait < maxDelay/2 {
		t.Fatalf("connections still ending at the limit, the wait fell to %v", wait)
	}
}

// A connection ended by an archived stanza over the limit whose catch-up
// moved the cursor past it (oversized.go) is retried as soon as any lost
// connection: the next catch-up does not meet that stanza again. Before,
// each such message doubled the wait, and a contact sending a few kept
// the account offline for up to max_backoff at a time.
func TestBackoffDropsOnceTheOversizedStanzaIsSkipped(t *testing.T) {
	const minDelay, maxDelay = time.Second, time.Minute
	b := newBackoff(minDelay, maxDelay)
	endAtLimit(b, 9)
	b.skipped()
	if wait := b.next(); wait > minDelay {
		t.Fatalf("after the stanza was skipped, the next login waits %v; want at most %v", wait, minDelay)
	}
	b.loggedIn()
	b.ended(io.EOF)
	if wait := b.next(); wait > minDelay {
		t.Fatalf("the wait grew to %v after a connection lost for another reason", wait)
	}
}

// endAtLimit has n connections log in and end at the limit, and leaves the
// last one's wait to the caller's next.
func endAtLimit(b *backoff, n int) {
	for i := range n {
		if i > 0 {
			b.next()
		}
		b.loggedIn()
		b.ended(&xmlLimitError{what: "a stanza", limit: defaultMaxStanza})
	}
}
