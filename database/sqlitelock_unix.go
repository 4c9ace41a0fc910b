//go:build unix

package database

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/dmbridge/dmbridge/internal/privatefile"
)

// lockSQLite keeps a second bridge process off a SQLite database: SQLite's
// own locking would let two bridges take turns writing, each applying and
// sending the same stored work. The lock is a POSIX record lock on
// "<database>.lock", held for the life of the process and released by the
// kernel when the process dies, so a crash never leaves a stale lock. Record
// locks are per process, which lets a test reopen the file in-process.
func lockSQLite(dsn string) (*os.File, error) {
	path, ok := privatefile.SQLitePath(dsn)
	if !ok {
		return nil, nil // in-memory: private to this process anyway
	}
	lockPath := path + ".lock"
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock file %s: %w", lockPath, err)
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err = syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &lk); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) {
			return nil, fmt.Errorf("SQLite database %s is in use by another dmbridge process (lock %s); "+
				"SQLite allows one bridge process: stop the other one, or use PostgreSQL with ha.enabled to run several", path, lockPath)
		}
		return nil, fmt.Errorf("lock %s: %w", lockPath, err)
	}
	return f, nil
}
