package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClass(t *testing.T) {
	tests := map[string]string{
		"/_matrix/client/v3/rooms/!r:x/send/m.room.message/txn1":     ClassSend,
		"/_matrix/client/v3/rooms/!r:x/redact/$e/txn2":               ClassSend,
		"/_matrix/client/v3/rooms/!r:x/state/m.room.member/@u:x":     ClassJoin,
		"/_matrix/client/v3/rooms/!r:x/state/m.room.name/":           ClassState,
		"/_matrix/client/v3/rooms/!r:x/state/m.bridge/a/b":           ClassState,
		"/_matrix/client/v3/createRoom":                              ClassCreateRoom,
		"/_matrix/client/v3/join/!r:x":                               ClassJoin,
		"/_matrix/client/v3/rooms/!r:x/join":                         ClassJoin,
		"/_matrix/client/v3/rooms/!r:x/invite":                       ClassJoin,
		"/_matrix/client/r0/rooms/!r:x/leave":                        ClassJoin,
		"/_matrix/client/v3/user/@u:x/account_data/m.direct":         ClassAccountData,
		"/_matrix/client/v3/user/@u:x/rooms/!r:x/account_data/m.tag": ClassAccountData,
		"/_matrix/client/v3/user/@u:x/filter":                        ClassOther,
		"/_matrix/media/v3/upload":                                   ClassMedia,
		"/_matrix/client/v1/media/download/x/y":                      ClassMedia,
		"/_matrix/client/v3/profile/@u:x/displayname":                ClassProfile,
		"/_matrix/client/v3/sync":                                    ClassSync,
		"/_matrix/client/v3/register":                                ClassOther,
		"/_matrix/client/v3/account/whoami":                          ClassOther,
		"/_matrix/client/v3/rooms/!r:x/messages":                     ClassOther,
		"/_matrix/client/versions":                                   ClassOther,
		"/somewhere/else":                                            ClassOther,
		"/_matrix/client/v3/rooms":                                   ClassOther,
	}
	for path, want := range tests {
		if got := Class(path); got != want {
			t.Errorf("Class(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestTransportCountsAndRemembers(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.Contains(r.URL.Path, "/send/"):
			w.WriteHeader(http.StatusOK)
		case strings.Contains(r.URL.Path, "/profile/"):
			w.WriteHeader(http.StatusNotFound)
		default:
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer hs.Close()
	m := New()
	client := &http.Client{Transport: m.Transport(nil)}
	get := func(path string) {
		resp, err := client.Get(hs.URL + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if st := m.Homeserver(); !st.LastSuccess.IsZero() || !st.LastFailure.IsZero() {
		t.Fatalf("status before any request = %+v", st)
	}
	get("/_matrix/client/v3/rooms/!r:x/send/m.room.message/1")
	get("/_matrix/client/v3/rooms/!r:x/send/m.room.message/2")
	get("/_matrix/client/v3/profile/@u:x")
	st := m.Homeserver()
	if st.LastSuccess.IsZero() || !st.LastFailure.IsZero() {
		t.Errorf("after 2xx and 404: %+v, want a success and no failure (a 4xx is an answer)", st)
	}
	get("/_matrix/client/v3/createRoom")
	if st = m.Homeserver(); st.LastFailure.IsZero() || st.FailureKind != "5xx" {
		t.Errorf("after a 502: %+v, want a 5xx failure", st)
	}
	hs.Close()
	get("/_matrix/client/v3/createRoom")
	if st = m.Homeserver(); st.FailureKind != "network" {
		t.Errorf("after a refused connection: %+v, want a network failure", st)
	}
	for _, c := range []struct {
		class string
		want  float64
	}{{ClassSend, 2}, {ClassProfile, 1}, {ClassCreateRoom, 2}, {ClassState, 0}} {
		if got := testutil.ToFloat64(m.hsRequests.WithLabelValues(c.class)); got != c.want {
			t.Errorf("requests{%s} = %v, want %v", c.class, got, c.want)
		}
	}
	for _, c := range []struct {
		class, kind string
		want        float64
	}{{ClassProfile, "4xx", 1}, {ClassCreateRoom, "5xx", 1}, {ClassCreateRoom, "network", 1}, {ClassSend, "5xx", 0}} {
		if got := testutil.ToFloat64(m.hsErrors.WithLabelValues(c.class, c.kind)); got != c.want {
			t.Errorf("errors{%s,%s} = %v, want %v", c.class, c.kind, got, c.want)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *Metrics
	m.RemoteTakenIn("c", 1, time.Now())
	m.RemoteApplied("c", 1, "message")
	m.RemoteParked("c", 1, "message")
	m.RemoteForgotten("c", 1)
	m.CommandQueued("$e", time.Now())
	m.CommandDone("$e", "send_message", true)
	m.MatrixParked()
	m.ConnectorConnected("c")
	m.WatchState(Sources{})
	if st := m.Homeserver(); !st.LastSuccess.IsZero() {
		t.Error("nil metrics report a homeserver success")
	}
	if m.Transport(nil) != http.DefaultTransport {
		t.Error("nil metrics wrap the transport")
	}
}

func TestLatencyOnlyForTimedEvents(t *testing.T) {
	m := New()
	m.RemoteTakenIn("c", 1, time.Now().Add(-30*time.Millisecond))
	m.RemoteApplied("c", 1, "message")
	m.RemoteApplied("c", 2, "message") // taken in before this process started
	m.RemoteTakenIn("c", 3, time.Now())
	m.RemoteParked("c", 3, "message")
	m.RemoteApplied("c", 4, "no such kind")
	// An intake that failed to commit: the connector sends the event again,
	// and a later process applies it untimed.
	m.RemoteTakenIn("c", 5, time.Now().Add(-time.Hour))
	m.RemoteForgotten("c", 5)
	m.RemoteApplied("c", 5, "message")
	if got := testutil.ToFloat64(m.events.WithLabelValues(RemoteToMatrix, "message", ResultOK)); got != 3 {
		t.Errorf("ok messages = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.events.WithLabelValues(RemoteToMatrix, "other", ResultOK)); got != 1 {
		t.Errorf("an unknown kind counted as other %v times, want 1", got)
	}
	if n := testutil.CollectAndCount(m.latency); n != 1 {
		t.Errorf("latency series = %d, want 1 (message, remote_to_matrix)", n)
	}
	var buf bytes.Buffer
	h := m.Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	buf.ReadFrom(rec.Body)
	if !strings.Contains(buf.String(), `dmbridge_bridge_latency_seconds_count{direction="remote_to_matrix",kind="message"} 1`) {
		t.Errorf("latency count not 1 in:\n%s", buf.String())
	}
	if m.remoteStart.len() != 0 {
		t.Errorf("%d start times left after every event ended", m.remoteStart.len())
	}
}

func TestStartTimesAreBounded(t *testing.T) {
	s := newStartTimes[int](3)
	now := time.Now()
	for i := range 5 {
		s.begin(i, now)
	}
	if s.len() != 3 {
		t.Fatalf("len = %d, want the bound 3", s.len())
	}
	if _, ok := s.end(4); ok {
		t.Error("an entry beyond the bound was kept")
	}
	// Orphans older than staleAfter make room, at most once a minute.
	s = newStartTimes[int](2)
	s.begin(1, now.Add(-2*staleAfter))
	s.begin(2, now.Add(-2*staleAfter))
	s.begin(3, now)
	if _, ok := s.end(3); !ok || s.len() != 0 {
		t.Errorf("stale entries were not swept (len %d)", s.len())
	}
}

func TestPprofOnTheMetricsMux(t *testing.T) {
	srv := httptest.NewServer(New().Handler())
	defer srv.Close()
	var wg sync.WaitGroup
	for _, c := range []struct {
		path string
		code int
	}{
		{"/debug/pprof/", 200},
		{"/debug/pprof/heap", 200},
		{"/debug/pprof/allocs", 200},
		{"/debug/pprof/goroutine?debug=1", 200},
		{"/debug/pprof/profile?seconds=1", 200},
		{"/debug/pprof/profile?seconds=0", 400},
		{"/debug/pprof/trace?seconds=1", 200},
		{"/debug/pprof/trace?seconds=301", 400},
		{"/debug/pprof/nonsense", 404},
		{"/metrics", 200},
	} {
		// Side by side: the profile and the trace take a second each, and
		// one does not stop the other.
		wg.Go(func() {
			resp, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Errorf("GET %s: %v", c.path, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code {
				t.Errorf("GET %s = %d, want %d", c.path, resp.StatusCode, c.code)
			}
			if c.code == 200 && len(body) == 0 {
				t.Errorf("GET %s: empty body", c.path)
			}
		})
	}
	wg.Wait()
	// The default mux stays untouched.
	if _, pattern := http.DefaultServeMux.Handler(httptest.NewRequest("GET", "/debug/pprof/", nil)); pattern != "" {
		t.Errorf("pprof is registered on http.DefaultServeMux (%q)", pattern)
	}
}
