package database

import (
	"context"
	"database/sql"
	"errors"

	"go.mau.fi/util/dbutil"
)

// queryOne runs a query for one row; a missing row is (nil, nil).
func queryOne[T any](ctx context.Context, db *dbutil.Database, scan func(dbutil.Scannable) (*T, error), query string, args ...any) (*T, error) {
	val, err := scan(db.QueryRow(ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return val, err
}

// queryMany runs a query and scans every row.
func queryMany[T any](ctx context.Context, db *dbutil.Database, scan func(dbutil.Scannable) (*T, error), query string, args ...any) ([]*T, error) {
	rows, err := db.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*T
	for rows.Next() {
		val, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, val)
	}
	return out, rows.Err()
}
