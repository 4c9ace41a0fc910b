package database_test

import (
	"context"
	"strings"
	"testing"

	"go.mau.fi/util/dbutil"

	"github.com/dmbridge/dmbridge/database"
)

// TestUpgradeFromV14 takes a database back to v14 (without login.ended_seq)
// with a logged-out login in it: the upgrade keeps the row, which reads as
// never logged out (0), and its end point then moves forward as usual.
func TestUpgradeFromV14(t *testing.T) {
	eachUpgradedFrom(t, 14, []string{
		"INSERT INTO login (id, connector_id, matrix_user, name, state) VALUES ('l', 'c', '@u:x', 'L', 'bad_credentials')",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		got, err := upgraded.Login.Get(ctx, "l")
		if err != nil || got == nil || got.State != "bad_credentials" || got.Name != "L" || got.EndedSeq != 0 {
			t.Fatalf("login after the upgrade = %+v, %v; want bad_credentials, L, ended at 0", got, err)
		}
		if err = upgraded.Login.SetEnded(ctx, "l", 5); err != nil {
			t.Fatal(err)
		}
		if got, err = upgraded.Login.Get(ctx, "l"); err != nil || got.EndedSeq != 5 {
			t.Fatalf("after SetEnded(5): %+v, %v", got, err)
		}
	})
}

// TestUpgradeFromV15 takes a database back to v15 (the key in place on
// both) with a message in it: the upgrade keeps the message and drops the
// key on PostgreSQL only.
func TestUpgradeFromV15(t *testing.T) {
	eachUpgradedFrom(t, 15, []string{
		"INSERT INTO login (id, connector_id, matrix_user) VALUES ('l1', 'c', '@a:x')",
		"INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ('l1', 'bob', 'bob', 1)",
		"INSERT INTO message (login_id, chat_id, remote_id, mxid, room_id, sender_id, ts) VALUES ('l1', 'bob', 'm1', '$m1', '!r:x', 'bob', 1)",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		bob := database.PortalKey{LoginID: "l1", ChatID: "bob"}
		if got, err := upgraded.Message.GetPart(ctx, bob, "m1", 0); err != nil || got == nil || got.MXID != "$m1" {
			t.Fatalf("message after the upgrade = %+v, %v", got, err)
		}
		var keys int
		query := `SELECT count(*) FROM pg_constraint WHERE conname = 'message_portal_fkey'`
		if upgraded.Dialect != dbutil.Postgres {
			query = `SELECT count(DISTINCT id) FROM pragma_foreign_key_list('message')`
		}
		if err := upgraded.QueryRow(ctx, query).Scan(&keys); err != nil {
			t.Fatal(err)
		}
		want := map[bool]int{true: 0, false: 1}[upgraded.Dialect == dbutil.Postgres]
		if keys != want {
			t.Fatalf("%s: %d foreign keys on message after the upgrade, want %d", upgraded.Dialect, keys, want)
		}
	})
}

// TestUpgradeFromV16 takes a database back to v16 (the pending indexes
// over every row) with a pending and a done row in the inbox and in
// mx_event: after the upgrade the pending ones are still read as pending,
// and each index holds only pending rows and is the one the pending
// query reads by (on PostgreSQL asked with sequential scans off, as its
// tables here are tiny: a partial index whose condition the query does
// not imply could not be).
func TestUpgradeFromV16(t *testing.T) {
	eachUpgradedFrom(t, 16, []string{
		"INSERT INTO inbox (connector_id, seq, login_id, kind, data) VALUES ('c', 1, 'l', 'message', '{}')",
		"INSERT INTO inbox (connector_id, seq, login_id, kind, data, done) VALUES ('c', 2, 'l', 'message', '{}', true)",
		"INSERT INTO mx_event (seq, event_id, room_id, data, received_at) VALUES (1, '$a', '!r:x', '{}', 1)",
		"INSERT INTO mx_event (seq, event_id, room_id, data, received_at, done) VALUES (2, '$b', '!r:x', '{}', 1, true)",
	}, func(ctx context.Context, t *testing.T, upgraded *database.Database) {
		if rows, err := upgraded.Inbox.Pending(ctx, "c", 0, 10); err != nil || len(rows) != 1 || rows[0].Seq != 1 {
			t.Errorf("pending inbox rows %+v, %v; want seq 1", rows, err)
		}
		if rows, err := upgraded.MXEvent.Pending(ctx, 0, 10); err != nil || len(rows) != 1 || rows[0].EventID != "$a" {
			t.Errorf("pending events %+v, %v; want $a", rows, err)
		}
		for index, query := range database.PendingQueries {
			def := `SELECT indexdef FROM pg_indexes WHERE indexname = $1`
			if upgraded.Dialect != dbutil.Postgres {
				def = `SELECT sql FROM sqlite_master WHERE name = $1`
			}
			var got string
			if err := upgraded.QueryRow(ctx, def, index).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if bare := strings.NewReplacer(" ", "", "(", "", ")", "").Replace(strings.ToLower(got)); !strings.Contains(bare, "wheredone=false") {
				t.Errorf("%s is %q, want a partial index of the pending rows", index, got)
			}
			if plan := explainPending(ctx, t, upgraded, query); !strings.Contains(plan, index) {
				t.Errorf("the pending query does not read %s:\n%s", index, plan)
			}
		}
	})
}

// explainPending is the database's plan of a pending query: PostgreSQL's
// with sequential scans off for the one transaction, SQLite's query plan.
func explainPending(ctx context.Context, t *testing.T, db *database.Database, query string) string {
	t.Helper()
	var lines []string
	err := db.DoTxn(ctx, nil, func(ctx context.Context) error {
		explain := "EXPLAIN QUERY PLAN "
		if db.Dialect == dbutil.Postgres {
			explain = "EXPLAIN "
			if _, err := db.Exec(ctx, "SET LOCAL enable_seqscan = off"); err != nil {
				return err
			}
		}
		args := []any{"c", 0, 10}
		if !strings.Contains(query, "$3") {
			args = []any{0, 10}
		}
		rows, err := db.Query(ctx, explain+query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			var id, parent, unused int
			dest := []any{&line}
			if db.Dialect != dbutil.Postgres {
				dest = []any{&id, &parent, &unused, &line}
			}
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			lines = append(lines, line)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
