package metrics

import (
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Endpoint classes of homeserver requests.
const (
	ClassSend        = "send"
	ClassState       = "state"
	ClassCreateRoom  = "createRoom"
	ClassJoin        = "join"
	ClassAccountData = "account_data"
	ClassMedia       = "media"
	ClassProfile     = "profile"
	ClassSync        = "sync"
	ClassOther       = "other"
)

// Indexes into classes, so the request path resolves a class without a map
// lookup or a label hash.
const (
	idxSend = iota
	idxState
	idxCreateRoom
	idxJoin
	idxAccountData
	idxMedia
	idxProfile
	idxSync
	idxOther
	numClasses
)

var classes = [numClasses]string{ClassSend, ClassState, ClassCreateRoom, ClassJoin, ClassAccountData, ClassMedia, ClassProfile, ClassSync, ClassOther}

// homeserverState is what health reports about the homeserver.
type homeserverState struct {
	lastSuccess atomic.Int64 // unix nanoseconds of the last 2xx answer
	lastFailure atomic.Int64 // unix nanoseconds of the last 5xx or network error
	lastKind    atomic.Value // string: the kind of the last failure
}

// HomeserverStatus is the homeserver's side of health.
type HomeserverStatus struct {
	// LastSuccess is when the homeserver last answered with 2xx; zero if
	// it has not in this process.
	LastSuccess time.Time
	// LastFailure is when a request last failed with 5xx or on the network,
	// and FailureKind which of those it was.
	LastFailure time.Time
	FailureKind string
}

// Homeserver returns the homeserver's status as the transport saw it.
func (m *Metrics) Homeserver() HomeserverStatus {
	if m == nil {
		return HomeserverStatus{}
	}
	var st HomeserverStatus
	if ns := m.homeserver.lastSuccess.Load(); ns != 0 {
		st.LastSuccess = time.Unix(0, ns).UTC()
	}
	if ns := m.homeserver.lastFailure.Load(); ns != 0 {
		st.LastFailure = time.Unix(0, ns).UTC()
		st.FailureKind, _ = m.homeserver.lastKind.Load().(string)
	}
	return st
}

// Transport wraps the HTTP transport of the homeserver client so that every
// request (including each of mautrix's retries) is counted by endpoint
// class, timed, and remembered for health. base nil means
// http.DefaultTransport.
func (m *Metrics) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if m == nil {
		return base
	}
	t := &transport{base: base, m: m}
	// Resolving the children once keeps the label lookup off the request path.
	for i, c := range classes {
		t.requests[i] = m.hsRequests.WithLabelValues(c)
		t.duration[i] = m.hsDuration.WithLabelValues(c)
	}
	return t
}

type transport struct {
	base     http.RoundTripper
	m        *Metrics
	requests [numClasses]counter
	duration [numClasses]observer
}

type counter interface{ Inc() }
type observer interface{ Observe(float64) }

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ci := classIndex(req.URL.Path)
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	now := time.Now()
	t.requests[ci].Inc()
	t.duration[ci].Observe(now.Sub(start).Seconds())
	switch {
	case err != nil:
		t.failed(ci, "network", now)
	case resp.StatusCode >= 500:
		t.failed(ci, "5xx", now)
	case resp.StatusCode >= 400:
		// The homeserver answered; a 404 for absent account data or a
		// profile is routine, so it does not count against its health.
		t.m.hsErrors.WithLabelValues(classes[ci], "4xx").Inc()
	default:
		t.m.homeserver.lastSuccess.Store(now.UnixNano())
	}
	return resp, err
}

func (t *transport) failed(ci int, kind string, now time.Time) {
	t.m.hsErrors.WithLabelValues(classes[ci], kind).Inc()
	t.m.homeserver.lastKind.Store(kind)
	t.m.homeserver.lastFailure.Store(now.UnixNano())
}

// Class names the endpoint class of a homeserver request path.
func Class(path string) string { return classes[classIndex(path)] }

// classIndex looks only at fixed path segments, never at ids, so that any
// room or user id lands in the same class.
func classIndex(path string) int {
	if strings.HasPrefix(path, "/_matrix/media/") || strings.HasPrefix(path, "/_matrix/client/v1/media/") {
		return idxMedia
	}
	rest, ok := strings.CutPrefix(path, "/_matrix/client/")
	if !ok {
		return idxOther
	}
	// Drop the version segment (v3, r0, v1, unstable).
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[i+1:]
	}
	// Up to five segments are looked at; splitting by hand keeps the
	// request path free of allocations.
	var seg [5]string
	n := 0
	for n < len(seg) {
		var more bool
		seg[n], rest, more = strings.Cut(rest, "/")
		n++
		if !more {
			break
		}
	}
	switch seg[0] {
	case "createRoom":
		return idxCreateRoom
	case "join":
		return idxJoin
	case "profile":
		return idxProfile
	case "sync":
		// Long polls (ghost devices, double_puppet.sync): their durations
		// would swamp any other class's.
		return idxSync
	case "user":
		// user/{id}/account_data/{type} and user/{id}/rooms/{room}/account_data/{type}
		if seg[2] == "account_data" || (seg[2] == "rooms" && seg[4] == "account_data") {
			return idxAccountData
		}
	case "rooms":
		switch seg[2] {
		case "send", "redact":
			return idxSend
		case "state":
			// mautrix changes a double puppet's membership with a member
			// state event rather than /join; it is a membership change all
			// the same.
			if seg[3] == "m.room.member" {
				return idxJoin
			}
			return idxState
		case "join", "invite", "leave", "kick", "ban", "unban", "forget":
			return idxJoin
		}
	}
	return idxOther
}
