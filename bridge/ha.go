package bridge

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/ha"
	"github.com/dmbridge/dmbridge/health"
	"github.com/dmbridge/dmbridge/internal/fence"
	"github.com/dmbridge/dmbridge/metrics"
)

// NewActive is New for an instance that has just won the election: its
// database transactions, homeserver requests and connector frames are
// fenced by lease, and /ready answers 200 only while it holds the lease.
func NewActive(ctx context.Context, cfg *config.Config, log zerolog.Logger, lease *ha.Elector) (*Bridge, error) {
	return build(ctx, cfg, log, lease)
}

// EpochFenceOnlyEnv, set to 1, turns on ha.Options.EpochFenceOnly. It is for
// the fault tests only (they show the epoch fence stopping a resumed former
// active by itself); it makes a paused former active unsafe.
const EpochFenceOnlyEnv = "DMBRIDGE_TEST_ONLY_HA_EPOCH_FENCE"

// ElectorOptions are the election's settings from the config (and the
// test-only EpochFenceOnlyEnv).
func ElectorOptions(cfg *config.Config) ha.Options {
	return ha.Options{Lease: cfg.HA.Lease.D(), Renew: cfg.HA.Renew.D(), EpochFenceOnly: os.Getenv(EpochFenceOnlyEnv) == "1"}
}

func openDB(ctx context.Context, cfg *config.Config, log zerolog.Logger, lease *ha.Elector) (*database.Database, error) {
	if lease == nil {
		return database.Open(ctx, cfg.Database.Type, cfg.Database.URI, log)
	}
	pool, err := lease.OpenDB(cfg.Database.URI, true)
	if err != nil {
		return nil, err
	}
	db, err := database.OpenPool(ctx, pool, cfg.Database.Type, log)
	if err != nil {
		_ = pool.Close()
		return nil, err
	}
	db.Fenced = true
	return db, nil
}

// fencedRoundTripper refuses a homeserver request unless this instance's
// lease is valid by its own clock, so a resumed former active sends nothing.
type fencedRoundTripper struct {
	base http.RoundTripper
	gate func() error
}

func (f fencedRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := f.gate(); err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, fmt.Errorf("not sent to the homeserver: %w", err)
	}
	return f.base.RoundTrip(r)
}

// fenceTransport fences base by gate (leaseGate's); a nil gate (no high
// availability) leaves it as it is. The check when a request starts gives a
// clear error; an http.Transport (the homeserver's always is) also checks
// right before every write to a connection (see fence.Transport), since a
// pause between that first check and the write would let a request out
// after the lease is lost.
func fenceTransport(base http.RoundTripper, gate func() error) http.RoundTripper {
	if gate == nil {
		return base
	}
	if base == nil {
		base = http.DefaultTransport
	}
	if t, ok := base.(*http.Transport); ok {
		base = fence.Transport(t, gate)
	}
	return fencedRoundTripper{base: base, gate: gate}
}

func leaseGate(lease *ha.Elector) func() error {
	if lease == nil {
		return nil
	}
	return lease.Check
}

// watchLease makes /ready and the metrics show the role.
func watchLease(lease *ha.Elector, checker *health.Checker, mx *metrics.Metrics) {
	if lease == nil {
		return
	}
	checker.AddReadyCheck("lease", func(context.Context) error {
		if role, epoch := lease.Role(); role != ha.Active {
			return fmt.Errorf("%s (epoch %d)", role, epoch)
		}
		return nil
	})
	registerRole(mx, lease)
}

// registerRole makes the role gauges (dmbridge_ha_active, _epoch) follow
// lease.
func registerRole(mx *metrics.Metrics, lease *ha.Elector) {
	mx.WatchRole(func() (bool, int64) {
		role, epoch := lease.Role()
		if role != ha.Active {
			return false, epoch
		}
		return true, epoch
	})
}
