// Package health serves GET /_dmbridge/health and GET /_dmbridge/ready on the
// appservice listener, for systemd watchdogs, Kubernetes probes and load
// balancers. Both answer JSON without authentication and without secrets.
//
// Health says the process is up and shows the state of what it depends on;
// it answers 200 whenever the process can answer at all. Ready says this
// instance can take work now and answers 503 when it cannot. Readiness never
// waits for a connector: a load balancer must route connectors to a ready
// instance before any has connected.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/metrics"
)

// Paths of the endpoints.
const (
	HealthPath = "/_dmbridge/health"
	ReadyPath  = "/_dmbridge/ready"
)

// checkTimeout bounds the database ping, so that a probe gets its answer
// well within the timeouts load balancers use (a few seconds).
const checkTimeout = 2 * time.Second

// ReadyCheck is one condition of readiness; a non-nil error makes the
// instance not ready. Its message is shown in the body, so it must not
// carry secrets.
type ReadyCheck func(ctx context.Context) error

// Checker answers the health and readiness probes of one bridge instance.
type Checker struct {
	db         *database.Database
	metrics    *metrics.Metrics
	connectors func() []string
	version    string
	started    time.Time
	log        zerolog.Logger

	mu     sync.Mutex
	checks []namedCheck
	// dbDown remembers the last ping's outcome, to log only its changes.
	dbDown bool
	// lastPing is how long the last database ping took.
	lastPing time.Duration
}

type namedCheck struct {
	name string
	fn   ReadyCheck
}

// New builds the checker. connectors lists the connector ids with a live
// connection; m supplies the homeserver's last successful call and may be nil.
func New(db *database.Database, m *metrics.Metrics, connectors func() []string, version string, log zerolog.Logger) *Checker {
	c := &Checker{db: db, metrics: m, connectors: connectors, version: version, started: time.Now(),
		log: log.With().Str("component", "health").Logger()}
	c.AddReadyCheck("database", c.pingDB)
	return c
}

// AddReadyCheck adds a condition of readiness, such as "this instance holds
// the lease" once there is high availability. Checks run in the order they
// were added, and all of them run on every probe.
func (c *Checker) AddReadyCheck(name string, fn ReadyCheck) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checks = append(c.checks, namedCheck{name: name, fn: fn})
}

// HealthHandler serves /_dmbridge/health.
func (c *Checker) HealthHandler() http.Handler { return http.HandlerFunc(c.serveHealth) }

// ReadyHandler serves /_dmbridge/ready.
func (c *Checker) ReadyHandler() http.Handler { return http.HandlerFunc(c.serveReady) }

// pingDB is the database condition, shared by both endpoints.
func (c *Checker) pingDB(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	start := time.Now()
	err := c.db.Stats().Ping(ctx)
	c.mu.Lock()
	c.lastPing = time.Since(start)
	changed := (err != nil) != c.dbDown
	c.dbDown = err != nil
	c.mu.Unlock()
	if changed && err != nil {
		c.log.Warn().Err(err).Msg("Database unreachable; not ready")
	} else if changed {
		c.log.Info().Msg("Database reachable again; ready")
	}
	if err != nil {
		// The driver's error can name hosts and files; the log has it, the
		// unauthenticated body gets only the kind.
		if errors.Is(err, context.DeadlineExceeded) {
			return errors.New("unreachable: no answer within " + checkTimeout.String())
		}
		return errors.New("unreachable")
	}
	return nil
}

// Readiness is the body of /_dmbridge/ready.
type Readiness struct {
	Ready bool `json:"ready"`
	// Checks maps each condition to "ok" or why it failed.
	Checks map[string]string `json:"checks"`
}

// Ready runs every readiness check.
func (c *Checker) Ready(ctx context.Context) *Readiness {
	c.mu.Lock()
	checks := append([]namedCheck(nil), c.checks...)
	c.mu.Unlock()
	r := &Readiness{Ready: true, Checks: make(map[string]string, len(checks))}
	for _, ch := range checks {
		if err := ch.fn(ctx); err != nil {
			r.Ready = false
			r.Checks[ch.name] = err.Error()
		} else {
			r.Checks[ch.name] = "ok"
		}
	}
	return r
}

func (c *Checker) serveReady(w http.ResponseWriter, r *http.Request) {
	ready := c.Ready(r.Context())
	status := http.StatusOK
	if !ready.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, ready)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(body)
}
