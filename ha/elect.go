package ha

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"
)

// tryAcquire makes one attempt at becoming active. It returns "" once this
// process holds the lease, or the current holder's name while that holder's
// lease is still valid.
func (e *Elector) tryAcquire(ctx context.Context) (string, error) {
	if err := e.ensureConn(ctx); err != nil {
		return "", err
	}
	var holder string
	var expired bool
	err := e.conn.QueryRowContext(ctx,
		`SELECT holder, expires_at < now() FROM dmbridge_lease WHERE id = 1`).Scan(&holder, &expired)
	if err != nil {
		e.dropConn()
		return "", fmt.Errorf("read lease: %w", err)
	}
	if !expired {
		return holder, nil
	}
	if holder != "" && holder != e.opts.Instance {
		// The holder stopped renewing but may still be alive (paused): end
		// every session it has, which releases its advisory lock and rolls
		// back whatever transaction it had open on the lease row.
		var n int
		err = e.conn.QueryRowContext(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = $1 AND pid <> pg_backend_pid()`, holder).Scan(&n)
		if err != nil {
			return "", fmt.Errorf("end the stale holder's sessions: %w", err)
		}
		if n > 0 {
			e.log.Warn().Str("stale_holder", holder).Int("sessions", n).Msg("Ended the sessions of an instance whose lease expired")
		}
	}
	got, err := e.lockWithin(ctx, time.Second)
	if err != nil {
		e.dropConn()
		return "", err
	}
	if !got {
		return "(advisory lock held by an unknown session)", nil
	}
	start := time.Now()
	epoch, formerDone, err := e.takeLease(ctx)
	if err != nil {
		e.unlock(ctx)
		return "", err
	}
	if epoch == 0 {
		// Renewed by someone between our read and the update.
		e.unlock(ctx)
		return holder, nil
	}
	e.log.Info().Int64("epoch", epoch).Str("previous_holder", holder).
		Dur("former_done_ago", time.Since(formerDone)).Msg("Active: took the lease")
	e.mu.Lock()
	e.formerDone = formerDone
	e.mu.Unlock()
	e.setRole(Active, epoch, start.Add(e.opts.Lease-e.opts.Margin))
	return "", nil
}

// lockWithin tries the advisory lock until it gets it or d has passed: a
// terminated backend releases its locks a moment after it is signalled.
func (e *Elector) lockWithin(ctx context.Context, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		var got bool
		if err := e.conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey).Scan(&got); err != nil {
			return false, fmt.Errorf("try the advisory lock: %w", err)
		}
		if got || time.Now().After(deadline) {
			return got, nil
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// takeLease moves the expired lease to this process with a new epoch and
// returns it, or 0 if the lease is not expired any more. It first waits for
// the row locks that fenced transactions hold, so no transaction of the
// former epoch can commit after it. It also returns, by this process's
// clock, a time by which the former active's last request had arrived (see
// FormerDone).
func (e *Elector) takeLease(ctx context.Context) (int64, time.Time, error) {
	tx, err := e.conn.BeginTx(ctx, nil)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("take the lease: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err = tx.ExecContext(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		return 0, time.Time{}, fmt.Errorf("take the lease: %w", err)
	}
	// FOR UPDATE conflicts with the FOR KEY SHARE of fenced transactions
	// (the UPDATE alone, changing no key, would not). Under that lock the
	// row is the one the UPDATE below replaces: how long ago it expired
	// (now() is the transaction's start, which was before this SELECT
	// returned) dates the former active's end.
	var released bool
	var agoSeconds float64
	err = tx.QueryRowContext(ctx, `SELECT expires_at = '-infinity',
		LEAST(GREATEST(extract(epoch from now()) - extract(epoch from expires_at), 0), 3600)::float8
		FROM dmbridge_lease WHERE id = 1 FOR UPDATE`).Scan(&released, &agoSeconds)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("take the lease: %w", err)
	}
	seen := time.Now()
	var epoch int64
	err = tx.QueryRowContext(ctx, `UPDATE dmbridge_lease SET holder = $1, epoch = epoch + 1,
		expires_at = now() + $2 * interval '1 millisecond'
		WHERE id = 1 AND expires_at < now() RETURNING epoch`,
		e.opts.Instance, e.opts.Lease.Milliseconds()).Scan(&epoch)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	} else if err != nil {
		return 0, time.Time{}, fmt.Errorf("take the lease: %w", err)
	}
	// The lease expired at the latest agoSeconds before seen. The former
	// active passed its last check by its own clock at least the margin
	// before that expiry, and the margin covers the way from a check to the
	// request's arrival. A released lease: the former had stopped all work
	// before it released.
	formerDone := seen
	if !released {
		formerDone = seen.Add(-time.Duration(agoSeconds * float64(time.Second)))
	}
	return epoch, formerDone, tx.Commit()
}

// renewLoop keeps the lease while this process is active. Any failure to
// renew ends the process's activity at once: a standby waits for the lease
// to expire by the database's clock before taking over, and by then this
// process has stopped by its own clock, with the margin to spare. It is the
// only user of the lock connection while active, so it is also what drops
// that connection once the lease is lost.
func (e *Elector) renewLoop(ctx context.Context) {
	defer close(e.renewDone)
	ticker := time.NewTicker(e.opts.Renew)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		case <-e.stopRenew:
			return
		case <-e.lostCh:
			e.dropConn()
			return
		}
		_, epoch := e.Role()
		e.mu.Lock()
		validUntil := e.validUntil
		e.mu.Unlock()
		start := time.Now()
		if !start.Before(validUntil) && !e.opts.EpochFenceOnly {
			// Resumed after a pause, or renewals were stuck: every check
			// fails already; say so instead of trying a renewal.
			e.lose(fmt.Errorf("the lease ran out by this process's clock %s ago", start.Sub(validUntil).Round(time.Millisecond)))
			e.dropConn()
			return
		}
		// The renewal may not take longer than the lease lasts by our clock.
		deadline := validUntil
		if e.opts.EpochFenceOnly {
			deadline = start.Add(e.opts.Lease)
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		res, err := e.conn.ExecContext(rctx, `UPDATE dmbridge_lease SET expires_at = now() + $3 * interval '1 millisecond'
			WHERE id = 1 AND holder = $1 AND epoch = $2`, e.opts.Instance, epoch, e.opts.Lease.Milliseconds())
		cancel()
		if err == nil {
			var n int64
			if n, err = res.RowsAffected(); err == nil && n != 1 {
				err = errors.New("another instance holds the lease")
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if e.opts.EpochFenceOnly {
				// Test mode: only the epoch fence may stop this process.
				e.log.Warn().Err(err).Msg("Renewal failed; carrying on (ha epoch-fence-only test mode)")
				e.dropConn()
				return
			}
			e.lose(fmt.Errorf("renew the lease: %w", err))
			e.dropConn()
			return
		}
		e.mu.Lock()
		if e.role == Active {
			e.validUntil = start.Add(e.opts.Lease - e.opts.Margin)
		}
		e.mu.Unlock()
	}
}

// lose ends this process's activity: every later Check fails and Lost is
// closed. It is final; the process must restart to stand again. It may be
// called from any goroutine (a fenced transaction calls it); the renewal
// loop then drops the lock connection.
func (e *Elector) lose(why error) {
	role, epoch := e.Role()
	if role == Standby {
		return
	}
	e.mu.Lock()
	lost := e.role == Lost
	e.mu.Unlock()
	if lost {
		return
	}
	e.log.Error().Err(why).Int64("epoch", epoch).Msg("Lost the active lease; stopping all work")
	e.setRole(Lost, epoch, time.Time{})
}

// Release gives the lease up on a clean shutdown, so that a standby takes
// over at once instead of waiting for the lease to expire.
func (e *Elector) Release(ctx context.Context) {
	e.mu.Lock()
	role, epoch, started := e.role, e.epoch, e.stopRenew != nil
	e.mu.Unlock()
	if started {
		e.stopOnce.Do(func() { close(e.stopRenew) })
		<-e.renewDone
	}
	if role == Active && e.conn != nil {
		_, err := e.conn.ExecContext(ctx, `UPDATE dmbridge_lease SET expires_at = '-infinity'
			WHERE id = 1 AND holder = $1 AND epoch = $2`, e.opts.Instance, epoch)
		if err != nil {
			e.log.Warn().Err(err).Msg("Could not release the lease; a standby takes over once it expires")
		} else {
			e.log.Info().Int64("epoch", epoch).Msg("Released the active lease")
		}
	}
	e.setRole(Lost, epoch, time.Time{})
	e.dropConn()
	_ = e.db.Close()
}

func (e *Elector) ensureConn(ctx context.Context) error {
	if e.conn != nil {
		return nil
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect for the election: %w", err)
	}
	e.conn = conn
	return nil
}

// dropConn closes the lock connection, which releases the advisory lock.
func (e *Elector) dropConn() {
	if e.conn != nil {
		// ErrBadConn makes database/sql close the session instead of
		// pooling it, so the advisory lock goes with it.
		_ = e.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = e.conn.Close()
		e.conn = nil
	}
}

func (e *Elector) unlock(ctx context.Context) {
	if _, err := e.conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, lockKey); err != nil {
		e.dropConn()
	}
}
