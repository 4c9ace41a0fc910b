package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/health"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// TestMetricsAndHealth runs messages both ways through a real Dendrite and
// reads what an operator would: the metrics listener over HTTP in the text
// format, and the health and readiness probes on the appservice listener.
// The counters must move by exactly what happened, the queue gauges must
// show work that is waiting (a command while the connector is away, inbox
// rows while the homeserver is frozen), and readiness must follow the
// database.
func TestMetricsAndHealth(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		var proxy *tcpProxy
		if target.Type == testdb.TypePostgres {
			// The shared PostgreSQL is never stopped: the bridge reaches
			// its database through a proxy the test can cut.
			u, err := url.Parse(target.URI)
			if err != nil {
				t.Fatal(err)
			}
			proxy = newTCPProxy(t, u.Host)
			u.Host = proxy.addr
			target.URI = u.String()
		}
		s := newStack(t, target)
		metricsURL := "http://" + s.br.MetricsAddr().String() + "/metrics"
		asURL := s.cfg.Appservice.Address
		ctx := context.Background()

		// Ready before any connector has connected.
		var ready health.Readiness
		getJSON(t, asURL+health.ReadyPath, http.StatusOK, &ready)
		if !ready.Ready || ready.Checks["database"] != "ok" {
			t.Errorf("ready before any connector = %+v, want ready with database ok", ready)
		}
		var st health.Status
		getJSON(t, asURL+health.HealthPath, http.StatusOK, &st)
		if st.Status != "ok" || !st.Database.OK || st.Homeserver.LastSuccess == nil || len(st.Connectors) != 0 {
			t.Errorf("health at start = %+v, want ok, database ok, a homeserver success (the bot's registration), no connectors", st)
		}

		m0 := scrape(t, metricsURL)
		f := s.connectFake(nil)
		f.send(&connector.Event{Kind: connector.KindContact, Login: testLogin,
			Contact: &connector.Contact{ID: "bob@network", Name: "Bob"}})
		for i := 1; i <= 3; i++ {
			f.send(textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("from bob %d", i)))
		}
		room := s.roomOf("bob@network")
		s.waitMessage(room, "from bob 3")
		remoteOK := func(kind string) labels {
			return labels{"direction": "remote_to_matrix", "kind": kind, "result": "ok"}
		}
		// The counter moves once the mapping is stored, just after the
		// homeserver has the event.
		m1 := waitMetric(t, metricsURL, "dmbridge_events_total", remoteOK("message"), m0.value("dmbridge_events_total", remoteOK("message"))+3)
		wantDelta(t, m0, m1, "dmbridge_events_total", remoteOK("contact"), 1)
		wantDelta(t, m0, m1, "dmbridge_bridge_latency_seconds", labels{"direction": "remote_to_matrix", "kind": "message"}, 3)
		wantDelta(t, m0, m1, "dmbridge_homeserver_requests_total", labels{"class": "createRoom"}, 1)
		// The double puppet's join.
		wantDelta(t, m0, m1, "dmbridge_homeserver_requests_total", labels{"class": "join"}, 1)
		if d := m1.value("dmbridge_homeserver_requests_total", labels{"class": "send"}) - m0.value("dmbridge_homeserver_requests_total", labels{"class": "send"}); d < 3 {
			t.Errorf("homeserver send requests moved by %v, want at least the 3 messages", d)
		}
		wantValue(t, m1, "dmbridge_connector_connects_total", labels{"connector": "fake"}, 1)
		wantValue(t, m1, "dmbridge_connector_connected", labels{"connector": "fake"}, 1)
		wantValue(t, m1, "dmbridge_logins", labels{"connector": "fake", "state": "connected"}, 1)
		wantValue(t, m1, "dmbridge_portals", nil, 1)
		wantValue(t, m1, "dmbridge_ghosts", nil, 1)
		wantValue(t, m1, "dmbridge_database_up", nil, 1)

		// Matrix → remote.
		for i := 1; i <= 2; i++ {
			if _, err := s.alice.SendText(ctx, room, fmt.Sprintf("to bob %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		sendOK := labels{"direction": "matrix_to_remote", "kind": "send_message", "result": "ok"}
		waitMetric(t, metricsURL, "dmbridge_events_total", sendOK, 2)
		// The latency is observed after the event counter moves: waited for too.
		waitMetric(t, metricsURL, "dmbridge_bridge_latency_seconds", labels{"direction": "matrix_to_remote", "kind": "send_message"}, 2)
		if n := len(f.commandsOf(connector.OpSendMessage)); n != 2 {
			t.Errorf("connector got %d send_message commands, want 2", n)
		}
		getJSON(t, asURL+health.HealthPath, http.StatusOK, &st)
		if len(st.Connectors) != 1 || st.Connectors[0] != (health.ConnectorStatus{ID: "fake", Connected: true}) ||
			len(st.Logins) != 1 || st.Logins[0] != (health.LoginCount{Connector: "fake", State: "connected", Count: 1}) {
			t.Errorf("health connectors %+v logins %+v, want fake connected and one login connected", st.Connectors, st.Logins)
		}
		var raw json.RawMessage
		if getJSON(t, asURL+health.HealthPath, http.StatusOK, &raw); strings.Contains(string(raw), testLogin) {
			t.Errorf("health, which answers anyone, names the login %s: %s", testLogin, raw)
		}

		// A command waits while the connector is away.
		f.stop()
		waitMetric(t, metricsURL, "dmbridge_connector_connected", labels{"connector": "fake"}, 0)
		if _, err := s.alice.SendText(ctx, room, "while away"); err != nil {
			t.Fatal(err)
		}
		waitMetric(t, metricsURL, "dmbridge_queue_depth", labels{"queue": "commands"}, 1)
		f = s.connectFakeWith(fakeSetup{store: f.store})
		waitMetric(t, metricsURL, "dmbridge_events_total", sendOK, 3)
		m3 := waitMetric(t, metricsURL, "dmbridge_queue_depth", labels{"queue": "commands"}, 0)
		wantValue(t, m3, "dmbridge_connector_connects_total", labels{"connector": "fake"}, 2)

		// Inbox rows wait while the homeserver is frozen: the connector's
		// events are stored and acked, but cannot be sent.
		pid := s.hs.Pid()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
		t.Cleanup(resume)
		for i := 4; i <= 6; i++ {
			f.send(textFrom("bob@network", fmt.Sprintf("m%d", i), fmt.Sprintf("from bob %d", i)))
		}
		waitMetric(t, metricsURL, "dmbridge_queue_depth", labels{"queue": "inbox"}, 3)
		resume()
		waitMetric(t, metricsURL, "dmbridge_queue_depth", labels{"queue": "inbox"}, 0)
		m4 := waitMetric(t, metricsURL, "dmbridge_events_total", remoteOK("message"), m0.value("dmbridge_events_total", remoteOK("message"))+6)
		s.waitMessage(room, "from bob 6")
		wantValue(t, m4, "dmbridge_parked_events", labels{"direction": "remote_to_matrix"}, 0)
		wantValue(t, m4, "dmbridge_parked_events", labels{"direction": "matrix_to_remote"}, 0)

		// The database goes away: not ready, still healthy (the process is
		// up) with the database shown down, and metrics still served.
		if proxy != nil {
			proxy.stop()
		} else {
			if err := s.br.DB.RawDB.Close(); err != nil {
				t.Fatal(err)
			}
		}
		tesths.WaitFor(t, 20*time.Second, "ready to answer 503", func() (bool, error) {
			var r health.Readiness
			code := fetchJSON(t, asURL+health.ReadyPath, &r)
			return code == http.StatusServiceUnavailable && !r.Ready && r.Checks["database"] != "ok", nil
		})
		getJSON(t, asURL+health.HealthPath, http.StatusOK, &st)
		if st.Status != "degraded" || st.Database.OK || st.Database.Error == "" {
			t.Errorf("health with the database down = %+v, want degraded with a database error", st)
		}
		wantValue(t, scrape(t, metricsURL), "dmbridge_database_up", nil, 0)
		if proxy != nil {
			proxy.start()
			tesths.WaitFor(t, 20*time.Second, "ready again", func() (bool, error) {
				var r health.Readiness
				return fetchJSON(t, asURL+health.ReadyPath, &r) == http.StatusOK && r.Ready, nil
			})
		}
	})
}

type labels map[string]string

// scrapeResult is one scrape, parsed from the text format.
type scrapeResult map[string]*dto.MetricFamily

func scrape(t testing.TB, u string) scrapeResult {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// value is the sample with exactly these labels (a histogram's count), or
// 0 when there is none.
func (r scrapeResult) value(name string, want labels) float64 {
	fam := r[name]
	if fam == nil {
		return 0
	}
	for _, m := range fam.Metric {
		if len(m.Label) != len(want) {
			continue
		}
		match := true
		for _, l := range m.Label {
			if want[l.GetName()] != l.GetValue() {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return 0
}

func waitMetric(t testing.TB, u, name string, l labels, want float64) scrapeResult {
	t.Helper()
	var last scrapeResult
	tesths.WaitFor(t, 30*time.Second, fmt.Sprintf("%s%v = %v", name, l, want), func() (bool, error) {
		last = scrape(t, u)
		if got := last.value(name, l); got != want {
			return false, fmt.Errorf("%s%v is %v", name, l, got)
		}
		return true, nil
	})
	return last
}

func wantValue(t testing.TB, r scrapeResult, name string, l labels, want float64) {
	t.Helper()
	if got := r.value(name, l); got != want {
		t.Errorf("%s%v = %v, want %v", name, l, got, want)
	}
}

func wantDelta(t testing.TB, before, after scrapeResult, name string, l labels, want float64) {
	t.Helper()
	if got := after.value(name, l) - before.value(name, l); got != want {
		t.Errorf("%s%v moved by %v, want %v", name, l, got, want)
	}
}

// httpGet fetches u and returns the response with its whole body (closed).
func httpGet(t testing.TB, u string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// fetchJSON decodes a JSON answer and returns its status code.
func fetchJSON(t testing.TB, u string, into any) int {
	t.Helper()
	resp, body := httpGet(t, u)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: Content-Type %q", u, ct)
	}
	if err := json.Unmarshal(body, into); err != nil {
		t.Fatalf("GET %s: %v in %s", u, err, body)
	}
	return resp.StatusCode
}

func getJSON(t testing.TB, u string, wantCode int, into any) {
	t.Helper()
	if code := fetchJSON(t, u, into); code != wantCode {
		t.Fatalf("GET %s: status %d, want %d", u, code, wantCode)
	}
}

// tcpProxy forwards a loopback port to a target; stop closes the listener
// and every connection, as a database going away would, and start listens
// on the same port again.
type tcpProxy struct {
	t      testing.TB
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target, addr: "127.0.0.1:0", conns: map[net.Conn]struct{}{}}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.forward(c)
		}
	}()
}

func (p *tcpProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}
