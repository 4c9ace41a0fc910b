// Package privatefile creates files that only their owner may read, for
// SQLite databases that hold message content, tokens and user ids. SQLite
// creates a missing database file with mode 0644 (less the umask), and
// gives its journal and WAL files the mode of the database file, so
// creating the file first with 0600 keeps all of them private.
package privatefile

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
)

// Create makes an empty file at path with mode 0600 unless something
// already exists there; an existing file keeps its mode, as a log file does.
func Create(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return f.Close()
}

// SQLitePath returns the file a go-sqlite3 data source name refers to, and
// false for an in-memory database.
func SQLitePath(dsn string) (string, bool) {
	path, query, _ := strings.Cut(dsn, "?")
	if rest, ok := strings.CutPrefix(path, "file:"); ok {
		path = rest
		if strings.HasPrefix(path, "//") {
			// file://host/path: only the local form has a path we can create.
			u, err := url.Parse("file:" + path)
			if err != nil {
				return "", false
			}
			path = u.Path
		}
		if unescaped, err := url.PathUnescape(path); err == nil {
			path = unescaped
		}
	}
	params, _ := url.ParseQuery(query)
	if path == "" || path == ":memory:" || params.Get("mode") == "memory" {
		return "", false
	}
	return path, true
}

// CreateSQLite is Create for the file of a go-sqlite3 data source name; an
// in-memory database needs nothing.
func CreateSQLite(dsn string) error {
	path, ok := SQLitePath(dsn)
	if !ok {
		return nil
	}
	return Create(path)
}
