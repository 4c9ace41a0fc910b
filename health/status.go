package health

import (
	"context"
	"net/http"
	"slices"
	"time"
)

// Status is the body of /_dmbridge/health.
type Status struct {
	// Status is "ok" when the database answers and every check passes,
	// else "degraded". The HTTP status is 200 either way: the process is up.
	Status        string            `json:"status"`
	Version       string            `json:"version"`
	StartedAt     time.Time         `json:"started_at"`
	UptimeSeconds int64             `json:"uptime_seconds"`
	Ready         *Readiness        `json:"readiness"`
	Database      DatabaseStatus    `json:"database"`
	Homeserver    HomeserverStatus  `json:"homeserver"`
	Connectors    []ConnectorStatus `json:"connectors"`
	Logins        []LoginCount      `json:"logins"`
}

// DatabaseStatus is the database's side of health.
type DatabaseStatus struct {
	OK bool `json:"ok"`
	// PingMS is how long the ping took.
	PingMS float64 `json:"ping_ms"`
	Error  string  `json:"error,omitempty"`
}

// HomeserverStatus is when the homeserver last answered with success, and
// when a request to it last failed with a 5xx or on the network.
type HomeserverStatus struct {
	LastSuccess *time.Time `json:"last_success"`
	LastFailure *time.Time `json:"last_failure,omitempty"`
	FailureKind string     `json:"failure_kind,omitempty"`
}

// ConnectorStatus is one connector id: those with a live connection and
// those that have logins.
type ConnectorStatus struct {
	ID        string `json:"id"`
	Connected bool   `json:"connected"`
}

// LoginCount is how many logins of a connector are in a state. Health
// answers anyone who reaches the appservice listener, so it counts logins
// and names none: a login id is the user's account on the network (a bare
// JID for XMPP), and listing them would let anyone enumerate the bridge's
// users and watch each go on- and offline. The bot's admin "logins"
// command lists them.
type LoginCount struct {
	Connector string `json:"connector"`
	State     string `json:"state"`
	Count     int64  `json:"count"`
}

// Health gathers the status of the process and what it depends on.
func (c *Checker) Health(ctx context.Context) *Status {
	now := time.Now()
	st := &Status{
		Status: "ok", Version: c.version, StartedAt: c.started.UTC(),
		UptimeSeconds: int64(now.Sub(c.started).Seconds()),
		Connectors:    []ConnectorStatus{}, Logins: []LoginCount{},
	}
	st.Ready = c.Ready(ctx)
	if msg := st.Ready.Checks["database"]; msg == "ok" {
		st.Database.OK = true
	} else {
		st.Database.Error = msg
	}
	c.mu.Lock()
	st.Database.PingMS = float64(c.lastPing.Microseconds()) / 1000
	c.mu.Unlock()
	if !st.Ready.Ready {
		st.Status = "degraded"
	}

	hs := c.metrics.Homeserver()
	if !hs.LastSuccess.IsZero() {
		st.Homeserver.LastSuccess = &hs.LastSuccess
	}
	if !hs.LastFailure.IsZero() {
		st.Homeserver.LastFailure = &hs.LastFailure
		st.Homeserver.FailureKind = hs.FailureKind
	}

	live := c.connectors()
	known := slices.Clone(live)
	if st.Database.OK {
		ctx, cancel := context.WithTimeout(ctx, checkTimeout)
		counts, err := c.db.Stats().LoginStates(ctx)
		cancel()
		if err != nil {
			c.log.Warn().Err(err).Msg("Health could not count logins")
		}
		for _, lc := range counts {
			st.Logins = append(st.Logins, LoginCount{Connector: lc.ConnectorID, State: lc.State, Count: lc.Count})
			known = append(known, lc.ConnectorID)
		}
	}
	slices.Sort(known)
	for _, id := range slices.Compact(known) {
		st.Connectors = append(st.Connectors, ConnectorStatus{ID: id, Connected: slices.Contains(live, id)})
	}
	return st
}

func (c *Checker) serveHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.Health(r.Context()))
}
