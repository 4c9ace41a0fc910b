package xmppconnector

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Contact profiles (vCards) are fetched by a goroutine of their own rather
// than by the account's worker. A vCard request goes to the contact's
// server, which may take its time or never answer: on the worker, every
// first message of an unknown contact waited up to profileTimeout, and all
// other chats behind it. Now the first message of a new contact waits for
// the profile at most firstProfileWait (a server that answers at once, as
// most do, still gets the contact's ghost into the new DM already named and
// pictured, rather than renamed in front of the user a moment later); after
// that it is bridged (the bridge names a contact it has no profile for by
// its id) and the profile follows as a contact event when it arrives.
//
// What triggers a fetch is cheap to send (a message from a stranger, a
// PEP headline, a presence with a photo hash), so fetches are bounded per
// JID and in all: a failure is remembered for profileRetryAfter, announced
// changes of one contact are refreshed at most once per profileRefreshEvery
// (a change announced in between is fetched at the end of it, not lost),
// and at most maxPendingProfiles JIDs wait, first fetches before refreshes.
const (
	profileTimeout      = 15 * time.Second
	firstProfileWait    = 3 * time.Second
	profileRetryAfter   = 10 * time.Minute
	profileRefreshEvery = 10 * time.Second
	maxPendingProfiles  = 256
	// maxTrackedProfiles bounds the per-JID memory; anyone can make a JID
	// known to it, so past the bound a newcomer is not fetched.
	maxTrackedProfiles = 4096
)

// profileState is what the fetcher remembers about one JID.
type profileState struct {
	queued    bool
	refresh   bool      // queued for an announced change, not a first fetch
	fetching  bool      // a fetch is running
	retryAt   time.Time // the last fetch failed: none before this
	refreshAt time.Time // no announced-change refresh before this
	// ready is closed when the first fetch has ended (nil once it has);
	// waited is set once a message waited on it: only the first one does.
	ready  chan struct{}
	waited bool
}

// profileFetches is the fetcher's queue, shared by the worker (which asks)
// and the fetcher goroutine (which takes).
type profileFetches struct {
	mu    sync.Mutex
	state map[string]*profileState
	queue []string // JIDs with queued set, oldest first
	wake  chan struct{}
}

func newProfileFetches() *profileFetches {
	return &profileFetches{state: make(map[string]*profileState), wake: make(chan struct{}, 1)}
}

// request asks for who's profile: a first fetch (refresh false: the
// contact is not known yet) or a refresh for an announced change. It never
// blocks, and reports false if the request was dropped.
func (p *profileFetches) request(who string, refresh bool, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state[who]
	if st == nil {
		if len(p.state) >= maxTrackedProfiles {
			p.prune(now)
		}
		if len(p.state) >= maxTrackedProfiles {
			return false
		}
		st = &profileState{}
		if !refresh {
			st.ready = make(chan struct{})
		}
		p.state[who] = st
	}
	switch {
	case now.Before(st.retryAt):
		// A server that did not answer a moment ago is not asked again
		// for every message or headline.
		return false
	case st.queued:
		// A first fetch need not wait for the refresh interval.
		st.refresh = st.refresh && refresh
		return true
	case st.fetching && !refresh:
		// The running fetch is the first fetch.
		return true
	}
	if len(p.queue) >= maxPendingProfiles {
		i := slices.IndexFunc(p.queue, func(j string) bool { return p.state[j].refresh })
		if refresh || i < 0 {
			return false
		}
		// A first fetch (someone wrote) goes before a refresh.
		p.state[p.queue[i]].queued = false
		p.state[p.queue[i]].endFirst()
		p.queue = slices.Delete(p.queue, i, i+1)
	}
	st.queued, st.refresh = true, refresh
	p.queue = append(p.queue, who)
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return true
}

// prune forgets JIDs with nothing queued, running or held back.
func (p *profileFetches) prune(now time.Time) {
	for who, st := range p.state {
		if !st.queued && !st.fetching && !now.Before(st.retryAt) && !now.Before(st.refreshAt) {
			delete(p.state, who)
		}
	}
}

// next takes the oldest queued JID that is due. With none due, it returns
// how long until one is (0: nothing is queued).
func (p *profileFetches) next(now time.Time) (who string, wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, j := range p.queue {
		st := p.state[j]
		due := st.retryAt
		if st.refresh && st.refreshAt.After(due) {
			due = st.refreshAt
		}
		if d := due.Sub(now); d > 0 {
			if wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		p.queue = slices.Delete(p.queue, i, i+1)
		st.queued, st.fetching = false, true
		if st.refresh {
			st.refreshAt = now.Add(profileRefreshEvery)
		}
		return j, 0, true
	}
	return "", wait, false
}

// done records how a fetch of who ended.
func (p *profileFetches) done(who string, failed bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.state[who]; st != nil {
		st.fetching = false
		st.endFirst()
		if failed {
			st.retryAt = now.Add(profileRetryAfter)
		}
	}
}

// endFirst lets a message waiting for the first fetch go.
func (st *profileState) endFirst() {
	if st.ready != nil {
		close(st.ready)
		st.ready = nil
	}
}

// firstFetch returns a channel closed when who's first fetch has ended, for
// the first message of who to wait on; nil for any later caller, or when no
// first fetch is queued or running.
func (p *profileFetches) firstFetch(who string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state[who]
	if st == nil || st.ready == nil || st.waited {
		return nil
	}
	st.waited = true
	return st.ready
}

// fetchProfiles runs the profile fetches until ctx ends.
func (a *account) fetchProfiles(ctx context.Context) {
	for {
		who, wait, ok := a.profiles.next(time.Now())
		if ok {
			a.fetchProfile(ctx, who)
			continue
		}
		var due <-chan time.Time
		var t *time.Timer
		if wait > 0 {
			t = time.NewTimer(wait)
			due = t.C
		}
		select {
		case <-ctx.Done():
		case <-a.profiles.wake:
		case <-due:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// fetchProfile refreshes one contact on the current connection. A failure
// is the profile's only: it is logged and remembered, and touches neither
// the archive cursor nor the connection's state.
func (a *account) fetchProfile(ctx context.Context, who string) {
	conn := a.current()
	if conn == nil {
		// Offline: whatever asked for it asks again once connected.
		a.profiles.done(who, false, time.Now())
		return
	}
	err := a.refreshContact(ctx, conn, who)
	// A fetch cut short by the connection ending says nothing about the
	// contact's server.
	failed := err != nil && conn.alive() && ctx.Err() == nil
	if failed {
		a.log.Warn().Err(err).Str("contact", who).Dur("retry_after", profileRetryAfter).Msg("Could not load contact profile")
	}
	a.profiles.done(who, failed, time.Now())
}
