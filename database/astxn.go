package database

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
)

// ASTxnQuery reads and writes the as_txn table. Its rows are only ever
// asked about, never read back, so it holds the database itself.
type ASTxnQuery struct{ db *dbutil.Database }

const (
	getASTxnQuery    = `SELECT 1 FROM as_txn WHERE txn_id=$1`
	insertASTxnQuery = `INSERT INTO as_txn (txn_id, received_at) VALUES ($1, $2) ON CONFLICT (txn_id) DO NOTHING`
	pruneASTxnQuery  = `DELETE FROM as_txn WHERE received_at < $1`
)

// Seen reports whether an appservice transaction was already taken in.
func (q *ASTxnQuery) Seen(ctx context.Context, txnID string) (bool, error) {
	var one int
	err := q.db.QueryRow(ctx, getASTxnQuery, txnID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// Insert records a transaction id; false if it was there already.
func (q *ASTxnQuery) Insert(ctx context.Context, txnID string) (bool, error) {
	res, err := q.db.Exec(ctx, insertASTxnQuery, txnID, time.Now().UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Prune forgets transaction ids older than the cutoff. A homeserver retries
// a transaction only until it is answered, so old ids cannot come back.
func (q *ASTxnQuery) Prune(ctx context.Context, before time.Time) error {
	_, err := q.db.Exec(ctx, pruneASTxnQuery, before.UnixMilli())
	return err
}
