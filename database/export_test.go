package database

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// OpenQuiet is Open with the WAL checkpointer's quiet tick at quiet rather
// than checkpointQuiet, for the external tests that wait for that tick.
func OpenQuiet(ctx context.Context, dialect, uri string, log zerolog.Logger, quiet time.Duration) (*Database, error) {
	return open(ctx, dialect, uri, log, quiet)
}

// PendingQueries are the queries that read the pending rows of the inbox
// and of mx_event through their partial indexes, by index name.
var PendingQueries = map[string]string{
	"inbox_pending_idx":    getPendingInboxQuery,
	"mx_event_pending_idx": getPendingMXEventsQuery,
}
