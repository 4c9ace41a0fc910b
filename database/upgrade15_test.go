package database_test

import (
	"context"
	"testing"

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
