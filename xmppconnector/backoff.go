package xmppconnector

import (
	"errors"
	"math/rand/v2"
	"time"
)

// backoff is how long an account waits before it logs in again.
type backoff struct {
	min, max time.Duration
	delay    time.Duration
	// tooLarge is set while connections end at xmpp.max_stanza_size: a
	// stanza over it kept in the server's archive ends every connection
	// at its catch-up, so a login that works is no reason to retry soon.
	tooLarge bool
}

func newBackoff(minDelay, maxDelay time.Duration) *backoff {
	return &backoff{min: minDelay, max: maxDelay, delay: minDelay}
}

// loggedIn is told of a login that worked.
func (b *backoff) loggedIn() {
	if !b.tooLarge {
		b.delay = b.min
	}
}

// ended is told why a connection that logged in ended, and reports
// whether it was at xmpp.max_stanza_size. A connection that ended for
// any other reason was fine until then: the wait the limit built up is
// dropped, as a login that works drops the wait of failed ones.
func (b *backoff) ended(err error) bool {
	b.tooLarge = errors.Is(err, errXMLTooLarge)
	if !b.tooLarge {
		b.delay = b.min
	}
	return b.tooLarge
}

// skipped is told that the stanza over the limit that ended the last
// connection is behind the archive cursor now (see oversized.go): the next
// catch-up will not meet it, so the wait it built up is dropped.
func (b *backoff) skipped() {
	b.tooLarge = false
	b.delay = b.min
}

// refused is told of a login the server refused: only the operator can
// fix that, so the next attempt is as late as allowed.
func (b *backoff) refused() { b.delay = b.max }

// next returns the wait before the next login, jittered so that accounts
// cut off together do not come back together, and doubles the delay.
func (b *backoff) next() time.Duration {
	wait := b.delay/2 + rand.N(b.delay/2+1)
	b.delay = min(2*b.delay, b.max)
	return wait
}
