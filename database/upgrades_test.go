package database_test

import (
	"context"
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
