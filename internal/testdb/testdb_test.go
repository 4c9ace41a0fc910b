package testdb

import (
	"context"
	"database/sql"
	"net/url"
	"strings"
	"testing"
)

func TestTargets(t *testing.T) {
	targets := Targets(t)
	want := 2
	if testing.Short() {
		want = 1 // SQLite only: the fast tier needs no server
	}
	if len(targets) != want {
		t.Fatalf("want %d targets, got %d", want, len(targets))
	}
	for _, target := range targets {
		t.Run(target.Name, func(t *testing.T) {
			db := target.Open(t)
			ctx := context.Background()
			var one int
			if err := db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("SELECT 1 = %d, %v", one, err)
			}
			// A write proves the database is ours and not read-only.
			if _, err := db.Exec(ctx, "CREATE TABLE probe (id INTEGER PRIMARY KEY)"); err != nil {
				t.Fatalf("create table: %v", err)
			}
			if _, err := db.Exec(ctx, "INSERT INTO probe (id) VALUES (1)"); err != nil {
				t.Fatalf("insert: %v", err)
			}

			other := Fresh(t, target)
			if other.URI == target.URI || other.Type != target.Type {
				t.Fatalf("Fresh returned %+v for %+v", other, target)
			}
			// The fresh database must not see the table created above.
			var n int
			err := other.Open(t).QueryRow(ctx, "SELECT COUNT(*) FROM probe").Scan(&n)
			if err == nil {
				t.Fatalf("fresh database already has table probe")
			}
		})
	}
}

func TestPostgresDroppedOnCleanup(t *testing.T) {
	SkipShort(t, "PostgreSQL")
	var name string
	t.Run("create", func(t *testing.T) {
		target := Postgres(t)
		target.Open(t) // an open connection must not stop the drop
		u, err := url.Parse(target.URI)
		if err != nil {
			t.Fatal(err)
		}
		name = strings.TrimPrefix(u.Path, "/")
	})
	if !strings.HasPrefix(name, "dmbridge_test_") {
		t.Fatalf("unexpected database name %q", name)
	}
	admin, err := sql.Open("postgres", adminURI())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var exists bool
	err = admin.QueryRow("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after cleanup", name)
	}
}
