package ha

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/lib/pq"
)

// OpenDB opens a PostgreSQL pool whose sessions carry this process's
// instance name as application_name, so that a later active can find and
// end them. With fence set, the pool is fenced: see fencedConnector.
func (e *Elector) OpenDB(uri string, fence bool) (*sql.DB, error) {
	inner, err := pq.NewConnector(uri)
	if err != nil {
		return nil, fmt.Errorf("ha: %w", err)
	}
	return sql.OpenDB(&fencedConnector{inner: inner, e: e, fence: fence}), nil
}

// fencedConnector wraps lib/pq's connector. Its connections check, at the
// start of every transaction, that the lease row still carries this
// process's epoch, and keep the row locked FOR KEY SHARE until the
// transaction ends; the takeover locks the row FOR UPDATE before it
// increments the epoch, so it waits for (or, after ending this process's
// sessions, aborts) every transaction of the old epoch, and no transaction
// of the old epoch can begin after it. KEY SHARE does not conflict with the
// renewal's plain UPDATE, so a long transaction never delays a renewal. Writes outside a
// transaction are checked against the lease by this process's clock.
type fencedConnector struct {
	inner driver.Connector
	e     *Elector
	fence bool
}

func (c *fencedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	if c.fence {
		if err := c.e.Check(); err != nil {
			return nil, err
		}
	}
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	fc := &fencedConn{Conn: conn, c: c}
	if _, err = fc.inner().ExecContext(ctx, `SELECT set_config('application_name', $1, false)`,
		[]driver.NamedValue{{Ordinal: 1, Value: c.e.Instance()}}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ha: name the session: %w", err)
	}
	return fc, nil
}

func (c *fencedConnector) Driver() driver.Driver { return c.inner.Driver() }

// pqConn is what lib/pq's connection implements besides driver.Conn.
type pqConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

type fencedConn struct {
	driver.Conn
	c    *fencedConnector
	inTx bool
}

func (f *fencedConn) inner() pqConn { return f.Conn.(pqConn) }

// errFenced marks a transaction refused because another instance took over.
var errFenced = errors.New("ha: fenced: the lease has a newer epoch; this instance is not active any more")

func (f *fencedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if !f.c.fence {
		return f.inner().BeginTx(ctx, opts)
	}
	if err := f.c.e.Check(); err != nil {
		return nil, err
	}
	tx, err := f.inner().BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	_, mine := f.c.e.Role()
	rows, err := f.inner().QueryContext(ctx, `SELECT epoch FROM dmbridge_lease WHERE id = 1 AND holder = $1 FOR KEY SHARE`,
		[]driver.NamedValue{{Ordinal: 1, Value: f.c.e.Instance()}})
	if err != nil {
		_ = tx.Rollback()
		return nil, fmt.Errorf("ha: check the lease: %w", err)
	}
	dest := make([]driver.Value, 1)
	err = rows.Next(dest)
	_ = rows.Close()
	if err != nil || dest[0] != mine {
		_ = tx.Rollback()
		f.c.e.lose(errFenced)
		return nil, errFenced
	}
	f.inTx = true
	return fenceTx{Tx: tx, conn: f}, nil
}

func (f *fencedConn) Begin() (driver.Tx, error) {
	return f.BeginTx(context.Background(), driver.TxOptions{})
}

type fenceTx struct {
	driver.Tx
	conn *fencedConn
}

func (t fenceTx) Commit() error   { t.conn.inTx = false; return t.Tx.Commit() }
func (t fenceTx) Rollback() error { t.conn.inTx = false; return t.Tx.Rollback() }

func (f *fencedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if f.c.fence && !f.inTx {
		if err := f.c.e.Check(); err != nil {
			return nil, err
		}
	}
	return f.inner().ExecContext(ctx, query, args)
}

func (f *fencedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return f.inner().QueryContext(ctx, query, args)
}

// PrepareContext prepares on lib/pq's connection; the statement's writes
// outside a transaction are checked as ExecContext checks them.
func (f *fencedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := f.inner().PrepareContext(ctx, query)
	if err != nil || !f.c.fence {
		return st, err
	}
	return &fencedStmt{Stmt: st, conn: f}, nil
}

// pqStmt is what lib/pq's statement implements besides driver.Stmt.
type pqStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

type fencedStmt struct {
	driver.Stmt
	conn *fencedConn
}

func (s *fencedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	if !s.conn.inTx {
		if err := s.conn.c.e.Check(); err != nil {
			return nil, err
		}
	}
	return s.Stmt.(pqStmt).ExecContext(ctx, args)
}

func (s *fencedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.Stmt.(pqStmt).QueryContext(ctx, args)
}

func (f *fencedConn) Ping(ctx context.Context) error { return f.inner().Ping(ctx) }

func (f *fencedConn) ResetSession(ctx context.Context) error { return f.inner().ResetSession(ctx) }

func (f *fencedConn) IsValid() bool { return f.inner().IsValid() }

func (f *fencedConn) CheckNamedValue(nv *driver.NamedValue) error {
	return f.inner().CheckNamedValue(nv)
}
