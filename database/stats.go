package database

import (
	"context"

	"go.mau.fi/util/dbutil"
)

// StatsQuery reads the counts that metrics and health report. It spans
// tables, so it is built on demand instead of being one of the per-table
// query structs.
type StatsQuery struct{ db *dbutil.Database }

// Stats returns the query struct for counts across tables.
func (db *Database) Stats() *StatsQuery { return &StatsQuery{db.Database} }

// Counts are the sizes an operator watches.
type Counts struct {
	// InboxPending: connector events stored but not yet applied.
	InboxPending int64
	// MatrixPending: Matrix events stored but not yet handled.
	MatrixPending int64
	// PendingCommands: commands to connectors whose result is not stored.
	PendingCommands int64
	// ParkedRemote and ParkedMatrix: events given up on and kept with
	// their error, in both tables until deleted by hand (Prune keeps them).
	ParkedRemote int64
	ParkedMatrix int64
	Portals      int64
	Ghosts       int64
}

// Counts reads every count in one round trip. The pending counts are
// served by the partial indexes of pending rows; the parked counts read
// what pruning leaves (done inbox rows go, parked ones stay; Matrix events
// stay a day).
func (q *StatsQuery) Counts(ctx context.Context) (*Counts, error) {
	var c Counts
	err := q.db.QueryRow(ctx, `
		SELECT
			(SELECT COUNT(*) FROM inbox WHERE done=false),
			(SELECT COUNT(*) FROM mx_event WHERE done=false),
			(SELECT COUNT(*) FROM pending_command),
			(SELECT COUNT(*) FROM inbox WHERE done=true AND error<>''),
			(SELECT COUNT(*) FROM mx_event WHERE done=true AND error<>''),
			(SELECT COUNT(*) FROM portal),
			(SELECT COUNT(*) FROM ghost)`).Scan(
		&c.InboxPending, &c.MatrixPending, &c.PendingCommands, &c.ParkedRemote, &c.ParkedMatrix, &c.Portals, &c.Ghosts)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// LoginStateCount is how many logins of a connector are in a state.
type LoginStateCount struct {
	ConnectorID string
	State       string
	Count       int64
}

// Scan reads a count row of LoginStates.
func (c *LoginStateCount) Scan(row dbutil.Scannable) (*LoginStateCount, error) {
	return dbutil.ValueOrErr(c, row.Scan(&c.ConnectorID, &c.State, &c.Count))
}

// LoginStates counts logins by connector and state.
func (q *StatsQuery) LoginStates(ctx context.Context) ([]*LoginStateCount, error) {
	return helper[LoginStateCount](q.db).QueryMany(ctx,
		"SELECT connector_id, state, COUNT(*) FROM login GROUP BY connector_id, state ORDER BY connector_id, state")
}

// Ping checks that the database answers a query.
func (q *StatsQuery) Ping(ctx context.Context) error {
	var one int
	return q.db.QueryRow(ctx, "SELECT 1").Scan(&one)
}
