// Package metrics is the bridge's Prometheus instrumentation: counters and
// latency histograms that the portals, the intake and the homeserver
// transport feed, gauges read from the database when Prometheus scrapes, and
// the listener that serves them together with pprof.
//
// Every bridge instance has its own registry (nothing is registered on
// Prometheus' global default one), so several bridges in one process, as in
// the tests, never share a counter. The methods the rest of the bridge calls
// are safe on a nil *Metrics and cost a few atomic operations: the hot path
// pays no database query and no lock held across a call.
package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dmbridge/dmbridge/connector"
)

// Namespace prefixes every metric name.
const Namespace = "dmbridge"

// Directions of bridged events.
const (
	RemoteToMatrix = "remote_to_matrix"
	MatrixToRemote = "matrix_to_remote"
)

// Results of bridged events.
const (
	// ResultOK: the event was applied (remote → Matrix) or the connector
	// answered the command with success (Matrix → remote). A replay that
	// was already bridged also counts as ok: it ends the same way.
	ResultOK = "ok"
	// ResultFailed: the connector refused the command for good; the user
	// was told in the room.
	ResultFailed = "failed"
	// ResultParked: the bridge gave up on a stored event after its retries
	// (or it could not be parsed) and kept it with its error.
	ResultParked = "parked"
)

// latencyBuckets span a lone message on an idle bridge (around a
// millisecond) to a homeserver that is struggling (tens of seconds).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics holds one bridge instance's registry and the instruments the
// bridge feeds. A nil *Metrics accepts every call and records nothing.
type Metrics struct {
	// Registry is what the listener serves; tests may gather it directly.
	Registry *prometheus.Registry

	events     *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	hsRequests *prometheus.CounterVec
	hsErrors   *prometheus.CounterVec
	hsDuration *prometheus.HistogramVec
	connects   *prometheus.CounterVec
	repairs    *prometheus.CounterVec
	role       *roleCollector
	dpSync     *dpSyncCollector

	// remote and commands hold each kind's children, resolved once: a
	// label lookup hashes and locks, a read-only map does neither.
	remote   map[string]*outcome
	commands map[string]*outcome

	remoteStart *startTimes[remoteKey]
	cmdStart    *startTimes[string]
	homeserver  homeserverState
}

// outcome is one kind's counters by result, and its latency. Children are
// resolved on first use, so a scrape shows only the kinds that happened.
type outcome struct {
	m         *Metrics
	direction string
	kind      string
	bad       string // the failing result of this direction

	once     sync.Once
	ok, fail prometheus.Counter
	latOnce  sync.Once
	latency  prometheus.Observer
}

func (o *outcome) counters() (ok, fail prometheus.Counter) {
	o.once.Do(func() {
		o.ok = o.m.events.WithLabelValues(o.direction, o.kind, ResultOK)
		o.fail = o.m.events.WithLabelValues(o.direction, o.kind, o.bad)
	})
	return o.ok, o.fail
}

func (o *outcome) observe(d time.Duration) {
	o.latOnce.Do(func() { o.latency = o.m.latency.WithLabelValues(o.direction, o.kind) })
	o.latency.Observe(d.Seconds())
}

// done counts one end of an event of this kind; start is observed as its
// latency when timed and successful.
func (o *outcome) done(success bool, start time.Time, timed bool) {
	ok, fail := o.counters()
	if !success {
		fail.Inc()
		return
	}
	// Observed before the count moves, so a scrape that sees the count
	// also sees the latency.
	if timed {
		o.observe(time.Since(start))
	}
	ok.Inc()
}

func (m *Metrics) outcomes(direction, bad string, kinds []string) map[string]*outcome {
	out := make(map[string]*outcome, len(kinds))
	for _, k := range kinds {
		out[k] = &outcome{m: m, direction: direction, kind: k, bad: bad}
	}
	return out
}

// The label values of kind: the protocol's event kinds and command ops. Any
// other value (it comes from the connector) is counted as "other", so that a
// label never grows without bound.
var (
	remoteKinds = []string{connector.KindMessage, connector.KindEdit, connector.KindDelete, connector.KindReaction,
		connector.KindReactionRemove, connector.KindReadReceipt, connector.KindContact,
		connector.KindChatDeleted, connector.KindLogin, "other"}
	commandOps = []string{connector.OpSendMessage, connector.OpEditMessage, connector.OpDeleteMessage, connector.OpReact,
		connector.OpUnreact, connector.OpMarkRead, connector.OpSetTyping, connector.OpSetPresence,
		connector.OpResolveIdentifier, connector.OpGetContact, connector.OpBackfill, "other"}
)

func lookup(table map[string]*outcome, kind string) *outcome {
	if o, ok := table[kind]; ok {
		return o
	}
	return table["other"]
}

// New builds an instance's metrics on a fresh registry, with the Go runtime
// and process collectors beside the bridge's own.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		events: counterVec("events_total",
			"Events bridged, by direction (remote_to_matrix, matrix_to_remote), kind (connector event kind or command op) and result (ok, failed, parked).",
			"direction", "kind", "result"),
		latency: histogramVec("bridge_latency_seconds",
			"Time from taking an event in to finishing it: remote_to_matrix from the connector event's intake to its homeserver send being stored; matrix_to_remote from the appservice transaction to the connector's result.",
			"direction", "kind"),
		hsRequests: counterVec("homeserver_requests_total",
			"HTTP requests to the homeserver, by endpoint class.",
			"class"),
		hsErrors: counterVec("homeserver_request_errors_total",
			"Homeserver requests that failed, by endpoint class and kind (4xx, 5xx, network).",
			"class", "kind"),
		hsDuration: histogramVec("homeserver_request_duration_seconds",
			"Duration of homeserver requests until the response headers arrived, by endpoint class.",
			"class"),
		connects: counterVec("connector_connects_total",
			"Connector connections that completed the handshake, by connector id.",
			"connector"),
		repairs: counterVec("repairs_total",
			"Things the bridge found wrong on the homeserver and put right, by what: m_direct, join, leave, invite.",
			"what"),
		remoteStart: newStartTimes[remoteKey](maxTracked),
		cmdStart:    newStartTimes[string](maxTracked),
	}
	m.remote = m.outcomes(RemoteToMatrix, ResultParked, remoteKinds)
	m.commands = m.outcomes(MatrixToRemote, ResultFailed, commandOps)
	m.Registry.MustRegister(m.events, m.latency, m.hsRequests, m.hsErrors, m.hsDuration, m.connects, m.repairs,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.role = &roleCollector{}
	m.Registry.MustRegister(m.role)
	m.dpSync = &dpSyncCollector{}
	m.Registry.MustRegister(m.dpSync)
	return m
}

// counterVec and histogramVec build the bridge's own metrics, which all
// share the namespace; the histograms all time a request or an event, so
// they share latencyBuckets too.
func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
}

func histogramVec(name, help string, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: name, Help: help, Buckets: latencyBuckets}, labels)
}

// maxTracked bounds the start times kept for latency. Beyond it (a large
// backlog) new events are simply not timed.
const maxTracked = 1 << 16

type remoteKey struct {
	connectorID string
	seq         int64
}

// RemoteTakenIn records when a connector event entered the bridge's intake,
// for the latency observed when it is applied.
func (m *Metrics) RemoteTakenIn(connectorID string, seq int64, at time.Time) {
	if m == nil {
		return
	}
	m.remoteStart.begin(remoteKey{connectorID, seq}, at)
}

// RemoteForgotten drops the start time of an event whose intake failed; the
// connector sends it again.
func (m *Metrics) RemoteForgotten(connectorID string, seq int64) {
	if m == nil {
		return
	}
	m.remoteStart.end(remoteKey{connectorID, seq})
}

// RemoteApplied counts a connector event that was applied and observes its
// latency if its intake happened in this process.
func (m *Metrics) RemoteApplied(connectorID string, seq int64, kind string) {
	m.remoteDone(connectorID, seq, kind, ResultOK)
}

// RemoteParked counts a connector event the bridge gave up on.
func (m *Metrics) RemoteParked(connectorID string, seq int64, kind string) {
	m.remoteDone(connectorID, seq, kind, ResultParked)
}

func (m *Metrics) remoteDone(connectorID string, seq int64, kind, result string) {
	if m == nil {
		return
	}
	start, timed := m.remoteStart.end(remoteKey{connectorID, seq})
	lookup(m.remote, kind).done(result == ResultOK, start, timed)
}

// CommandQueued records when the Matrix event behind a connector command
// (its txn) was taken in from the homeserver.
func (m *Metrics) CommandQueued(txn string, receivedAt time.Time) {
	if m == nil || receivedAt.IsZero() {
		return
	}
	m.cmdStart.begin(txn, receivedAt)
}

// CommandDone counts a command's end: ok when the connector's result was
// stored, failed when the user was told it was not delivered.
func (m *Metrics) CommandDone(txn, op string, ok bool) {
	if m == nil {
		return
	}
	start, timed := m.cmdStart.end(txn)
	lookup(m.commands, op).done(ok, start, timed)
}

// MatrixParked counts a Matrix event the bridge gave up on.
func (m *Metrics) MatrixParked() {
	if m == nil {
		return
	}
	m.events.WithLabelValues(MatrixToRemote, "event", ResultParked).Inc()
}

// ConnectorConnected counts a completed connector handshake.
func (m *Metrics) ConnectorConnected(connectorID string) {
	if m == nil {
		return
	}
	m.connects.WithLabelValues(connectorID).Inc()
}

// Repairs that the bridge counts (Repaired).
const (
	// RepairDirect: a user's m.direct lacked a portal or listed a cleaned
	// one.
	RepairDirect = "m_direct"
	// RepairJoin: a join the homeserver had accepted was not applied, and
	// the double puppet joined again.
	RepairJoin = "join"
	// RepairLeave: the user had left a portal without the bridge noticing,
	// and it was cleaned up.
	RepairLeave = "leave"
	// RepairInvite: a new portal lacked the user's invite, and the ghost
	// invited them again.
	RepairInvite = "invite"
)

// Repaired counts one repair of what (a Repair* constant).
func (m *Metrics) Repaired(what string) {
	if m == nil {
		return
	}
	m.repairs.WithLabelValues(what).Inc()
}
