package database

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"

	"go.mau.fi/util/dbutil"
)

// maxPrepared bounds the statements a stmtCache keeps prepared (each costs
// some memory per pooled connection on the server); past it a statement
// runs unprepared, as before.
const maxPrepared = 64

// stmtCache runs the statements of the per-message path as prepared
// statements. Through dbutil every statement with parameters is sent
// unprepared, which lib/pq does in two round trips (parse and describe,
// then bind and execute), each of which PostgreSQL counts as a
// transaction of its own outside BEGIN, and which both databases parse and
// plan anew each time. A prepared statement is one round trip and is
// parsed once per pooled connection (database/sql prepares it again on a
// connection that does not have it, inside a transaction too).
type stmtCache struct {
	db *dbutil.Database
	// byTextInTx: in a transaction, a statement runs by its text on the
	// transaction, whose connection keeps it prepared (a sqlite3-fk-wal
	// pool's gatedConn, for a text marked keptPrefix). Binding the
	// pool's prepared statement to the transaction instead
	// (database/sql's Tx.StmtContext) builds a Stmt, registers it with
	// the pool under the pool's lock, grabs the connection twice and
	// closes it all again at the end: on SQLite more work than the
	// statement itself, four times per bridged message. It is set before
	// the database is used (open) and never changes.
	byTextInTx bool
	mu         sync.Mutex
	m          map[string]*sql.Stmt
	// texts holds the SQLite form of each query: sqlitePlaceholders',
	// marked keptPrefix.
	texts map[string]string
}

func newStmtCache(db *dbutil.Database) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt), texts: make(map[string]string)}
}

// text is query as the driver takes it: on SQLite with ?N placeholders,
// and marked as a single statement that a connection may keep prepared.
func (c *stmtCache) text(query string) string {
	if c.db.Dialect != dbutil.SQLite {
		return query
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.texts[query]; ok {
		return t
	}
	t := keptPrefix + sqlitePlaceholders(query)
	if len(c.texts) < maxPrepared {
		c.texts[query] = t
	}
	return t
}

// get returns the prepared form of query, or nil when the cache is full.
func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.m[query]
	full := len(c.m) >= maxPrepared
	c.mu.Unlock()
	if ok || full {
		return st, nil
	}
	text := c.text(query)
	// Prepared on the pool, not in the caller's transaction: a statement
	// prepared on a transaction is closed with it.
	st, err := c.db.RawDB.PrepareContext(context.WithoutCancel(ctx), text)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[query]; ok {
		_ = st.Close()
		return old, nil
	}
	c.m[query] = st
	return st, nil
}

// bound returns st for use in the transaction ctx carries, if any.
func (c *stmtCache) bound(ctx context.Context, st *sql.Stmt) *sql.Stmt {
	if tx, ok := c.db.Execable(ctx).(*dbutil.LoggingTxn); ok {
		return tx.UnderlyingTx.StmtContext(ctx, st)
	}
	return st
}

// inOtherTxn reports a transaction of a type whose connection this cache
// cannot reach; such statements run unprepared through dbutil.
func (c *stmtCache) inOtherTxn(ctx context.Context) bool {
	exe := c.db.Execable(ctx)
	if _, ok := exe.(dbutil.Transaction); ok {
		_, logging := exe.(*dbutil.LoggingTxn)
		return !logging
	}
	return false
}

// exec runs query, prepared, in ctx's transaction if it carries one.
func (c *stmtCache) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return runStmt(c, ctx, query, func() (sql.Result, error) {
		return c.db.Exec(ctx, query, args...)
	}, func(st *sql.Stmt) (sql.Result, error) {
		return st.ExecContext(ctx, args...)
	}, func(tx *sql.Tx, text string) (sql.Result, error) {
		return tx.ExecContext(ctx, text, args...)
	})
}

// query is exec for a statement that returns rows.
func (c *stmtCache) query(ctx context.Context, query string, args ...any) (dbutil.Rows, error) {
	return runStmt(c, ctx, query, func() (dbutil.Rows, error) {
		return c.db.Query(ctx, query, args...)
	}, func(st *sql.Stmt) (dbutil.Rows, error) {
		return st.QueryContext(ctx, args...)
	}, nil)
}

// runStmt runs query through prepared when it can, else through plain
// (dbutil, unprepared), or in a transaction by its text (byTextInTx; only
// statements without rows, which the connection keeps prepared: a query
// by its text would be prepared for each run).
func runStmt[T any](c *stmtCache, ctx context.Context, query string, plain func() (T, error), prepared func(*sql.Stmt) (T, error),
	byText func(*sql.Tx, string) (T, error)) (T, error) {
	if c.byTextInTx && byText != nil {
		if tx, ok := c.db.Execable(ctx).(*dbutil.LoggingTxn); ok {
			return byText(tx.UnderlyingTx, c.text(query))
		}
	}
	if c.inOtherTxn(ctx) {
		return plain()
	}
	st, err := c.get(ctx, query)
	if err != nil {
		var zero T
		return zero, err
	} else if st == nil {
		return plain()
	}
	return prepared(c.bound(ctx, st))
}

// close closes the prepared statements.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, st := range c.m {
		_ = st.Close()
		delete(c.m, k)
	}
}

// sqlitePlaceholders rewrites $1-style placeholders into SQLite's ?1, as
// dbutil does for the statements it runs.
func sqlitePlaceholders(query string) string {
	var out strings.Builder
	out.Grow(len(query))
	for i := 0; i < len(query); i++ {
		if query[i] != '$' {
			out.WriteByte(query[i])
			continue
		}
		j := i + 1
		for j < len(query) && query[j] >= '0' && query[j] <= '9' {
			j++
		}
		if j == i+1 {
			out.WriteByte('$')
			continue
		}
		n, _ := strconv.Atoi(query[i+1 : j])
		out.WriteString("?" + strconv.Itoa(n))
		i = j - 1
	}
	return out.String()
}
