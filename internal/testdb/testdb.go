// Package testdb hands out throwaway databases for tests.
//
// Every test that touches storage is expected to run against every dialect
// the bridge supports, so the main entry point, Targets, returns one fresh
// database per dialect. PostgreSQL is not optional: if the server cannot be
// reached the test fails with instructions instead of skipping, because a
// silently skipped dialect is exactly how dialect-specific bugs slip through.
// The one exception is `go test -short` (make unit), the fast tier that must
// run with no server at all: there Targets gives SQLite only and Postgres
// skips, and make test runs everything again with PostgreSQL.
package testdb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "github.com/mattn/go-sqlite3"
	"go.mau.fi/util/dbutil"
	// Registers the "sqlite3-fk-wal" driver name that the bridge itself uses,
	// so tests exercise the same pragmas (foreign keys, WAL) as production.
	_ "go.mau.fi/util/dbutil/litestream"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
)

// Dialect strings, as understood by dbutil.NewWithDialect.
const (
	TypeSQLite   = "sqlite3-fk-wal"
	TypePostgres = "postgres"
)

// DefaultAdminURI is where the PostgreSQL maintenance connection goes unless
// DMBRIDGE_TEST_PG says otherwise. It relies on trust authentication for
// local TCP connections, which is how the development machines are set up.
const DefaultAdminURI = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURIEnv overrides DefaultAdminURI.
const AdminURIEnv = "DMBRIDGE_TEST_PG"

const pgStartHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start" +
	" (or point " + AdminURIEnv + " at a server where CREATE DATABASE is allowed)"

// Target describes one database a test can run against.
type Target struct {
	// Name is short and stable ("sqlite", "postgres") so it can be used as a
	// subtest name.
	Name string
	// Type is a dbutil dialect string: TypeSQLite or TypePostgres.
	Type string
	// URI is the connection string for Type's database/sql driver.
	URI string
}

// Targets returns one fresh, empty database per supported dialect. Each is
// removed again when the test finishes. Under -short it returns SQLite only.
func Targets(t testing.TB) []Target {
	t.Helper()
	if testing.Short() {
		return []Target{SQLite(t)}
	}
	return []Target{SQLite(t), Postgres(t)}
}

// Each runs test once per dialect, as a subtest named after the dialect,
// each time on that dialect's database from Targets.
func Each(t *testing.T, test func(t *testing.T, target Target)) {
	t.Helper()
	each(t, false, test)
}

// EachParallel is Each with the dialects' subtests run side by side. It
// is for the long end-to-end tests that mostly wait (an outage, a grace
// period, a client's timeout), each on a stack of its own: run one after
// the other they cost make test their sum. Such a test must share nothing
// with its sibling: no t.Setenv, no process-wide measurement it asserts on.
func EachParallel(t *testing.T, test func(t *testing.T, target Target)) {
	t.Helper()
	each(t, true, test)
}

func each(t *testing.T, parallel bool, test func(t *testing.T, target Target)) {
	t.Helper()
	for _, target := range Targets(t) {
		t.Run(target.Name, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			test(t, target)
		})
	}
}

// EachDatabase runs test once per dialect, like Each, with the bridge's
// database opened there (Open): the set-up most storage tests need and
// nothing more.
func EachDatabase(t *testing.T, test func(ctx context.Context, t *testing.T, db *database.Database)) {
	t.Helper()
	Each(t, func(t *testing.T, target Target) { test(context.Background(), t, Open(t, target)) })
}

// Fresh returns a new empty database of the same kind as target.
func Fresh(t testing.TB, target Target) Target {
	t.Helper()
	switch target.Type {
	case TypeSQLite:
		return SQLite(t)
	case TypePostgres:
		return Postgres(t)
	default:
		t.Fatalf("testdb: unknown database type %q", target.Type)
		return Target{}
	}
}

// SkipShort skips the test under -short (make unit), saying which server it
// would need. tesths and testxmpp call it too, so that the fast tier's rule
// lives in one place.
func SkipShort(t testing.TB, server string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs %s; skipped under -short (make unit), run by make test", server)
	}
}

// SQLite returns a new SQLite database file in a per-call temporary
// directory.
func SQLite(t testing.TB) Target {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.db")
	// _txlock=immediate makes write transactions take the lock up front,
	// which is what the bridge configures too; deferred locking turns
	// concurrent writers into SQLITE_BUSY errors instead of waiting.
	return Target{Name: "sqlite", Type: TypeSQLite, URI: "file:" + path + "?_txlock=immediate"}
}

// Postgres creates a new database on the test PostgreSQL server and drops it
// (forcibly, so leaked connections do not block it) when the test finishes.
// Under -short it skips the test: the fast tier needs no server.
func Postgres(t testing.TB) Target {
	t.Helper()
	SkipShort(t, "PostgreSQL")
	adminURI := adminURI()
	admin := openAdmin(t, adminURI)
	defer admin.Close()

	name := "dmbridge_test_" + randomHex(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The name is generated here from hex digits only, so formatting it into
	// the statement is safe; CREATE DATABASE does not accept parameters.
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testdb: creating PostgreSQL database %s: %v", name, err)
	}
	t.Cleanup(func() { dropDatabase(t, adminURI, name) })

	uri, err := withDatabase(adminURI, name)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return Target{Name: "postgres", Type: TypePostgres, URI: uri}
}

// Open connects to the database, failing the test if it is unreachable, and
// closes the connection when the test finishes.
func (tg Target) Open(tb testing.TB) *dbutil.Database {
	tb.Helper()
	db, err := dbutil.NewWithDialect(tg.URI, tg.Type)
	if err != nil {
		tb.Fatalf("testdb: opening %s database: %v", tg.Name, err)
	}
	// Registered before the ping so a failed ping does not leak the pool.
	tb.Cleanup(func() {
		if err := db.Close(); err != nil {
			tb.Errorf("testdb: closing %s database: %v", tg.Name, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.RawDB.PingContext(ctx); err != nil {
		tb.Fatalf("testdb: connecting to %s database: %v", tg.Name, err)
	}
	return db
}

func adminURI() string {
	if v := os.Getenv(AdminURIEnv); v != "" {
		return v
	}
	return DefaultAdminURI
}

func openAdmin(t testing.TB, uri string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", uri)
	if err != nil {
		t.Fatalf("testdb: bad PostgreSQL admin URI %q: %v", redact(uri), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		t.Fatalf("testdb: PostgreSQL is not reachable at %s: %v\n%s", redact(uri), err, pgStartHint)
	}
	return db
}

func dropDatabase(t testing.TB, adminURI, name string) {
	admin, err := sql.Open("postgres", adminURI)
	if err != nil {
		t.Errorf("testdb: dropping %s: %v", name, err)
		return
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// FORCE terminates sessions the test forgot to close; without it one
	// leaked connection would make every cleanup fail.
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		t.Errorf("testdb: dropping %s: %v", name, err)
	}
}

// withDatabase swaps the database name in a postgres:// URI, keeping
// credentials and options such as sslmode.
func withDatabase(uri, name string) (string, error) {
	u, err := url.Parse(uri)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// Key/value DSNs ("host=... dbname=...") are not supported; the
		// override exists for pointing at another server, not another syntax.
		return "", fmt.Errorf("%s must be a postgres:// URI, got %q", AdminURIEnv, redact(uri))
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.User == nil {
		return uri
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return strings.Replace(u.String(), ":xxx@", ":***@", 1)
}

func randomHex(t testing.TB, n int) string {
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return hex.EncodeToString(buf)
}

// Open opens the bridge's database on target, with every upgrade applied,
// and closes it when the test ends.
func Open(t testing.TB, target Target) *database.Database {
	t.Helper()
	db, err := database.Open(context.Background(), target.Type, target.URI, zerolog.Nop())
	if err != nil {
		t.Fatalf("open %s: %v", target.Name, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// RefuseLogicalMessages makes target, a PostgreSQL database, refuse
// pg_logical_emit_message to the sessions opened after it returns, as a
// server that does not grant it to the bridge's role would: a function of
// that name that raises insufficient_privilege comes first in the
// database's search path (schema refuse, where tables created by name
// alone now go too).
func RefuseLogicalMessages(t testing.TB, target Target) {
	t.Helper()
	ctx := context.Background()
	db := target.Open(t)
	var name string
	if err := db.QueryRow(ctx, "SELECT current_database()").Scan(&name); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE SCHEMA refuse`,
		`CREATE FUNCTION refuse.pg_logical_emit_message(boolean, text, text) RETURNS pg_lsn
			LANGUAGE plpgsql AS $$ BEGIN RAISE insufficient_privilege USING MESSAGE = 'not for you'; END $$`,
		`ALTER DATABASE "` + name + `" SET search_path = refuse, pg_catalog, public`,
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("testdb: %s: %v", q, err)
		}
	}
}
