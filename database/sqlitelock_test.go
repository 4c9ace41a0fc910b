package database

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

const lockChildEnv = "DMBRIDGE_TEST_SQLITE_LOCK_CHILD"

// TestSQLiteLockChild is the second process of TestSQLiteRefusesSecondProcess.
func TestSQLiteLockChild(t *testing.T) {
	uri := os.Getenv(lockChildEnv)
	if uri == "" {
		t.Skip("helper process only")
	}
	db, err := Open(context.Background(), "sqlite3-fk-wal", uri, zerolog.Nop())
	if err != nil {
		t.Fatalf("CHILD-ERR %v", err)
	}
	_ = db.Close()
}

// TestSQLiteRefusesSecondProcess: while one process has the SQLite database
// open, another is refused with a one-line error; once the first closes it,
// the other may open it.
func TestSQLiteRefusesSecondProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bridge.db")
	uri := "file:" + path + "?_txlock=immediate"
	db, err := Open(context.Background(), "sqlite3-fk-wal", uri, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	child := func() (string, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteLockChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), lockChildEnv+"="+uri)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := child()
	if err == nil {
		t.Fatalf("second process opened the database in use:\n%s", out)
	}
	want := "SQLite database " + path + " is in use by another dmbridge process (lock " + path + ".lock)"
	if !strings.Contains(out, want) {
		t.Errorf("second process said:\n%s\nwant %q", out, want)
	}
	// Within one process a reopen is allowed (tests restart bridges so).
	db2, err := Open(context.Background(), "sqlite3-fk-wal", uri, zerolog.Nop())
	if err != nil {
		t.Fatalf("reopen in the same process: %v", err)
	}
	_ = db2.Close()
	_ = db.Close()
	if out, err = child(); err != nil {
		t.Errorf("after the first closed, the second process still failed:\n%s", out)
	}
}
