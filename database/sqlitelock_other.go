//go:build !unix

package database

import "os"

// lockSQLite is a no-op where POSIX record locks are missing.
func lockSQLite(string) (*os.File, error) { return nil, nil }
