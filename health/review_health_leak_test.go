package health

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestReviewHealthDoesNotListAccounts: /_dmbridge/health answers anyone who
// reaches the appservice listener, without authentication (the listener the
// provisioning API, CORS-open for browsers, shares). Its body lists every
// login id, which for the XMPP connector is the user's own bare JID, with
// its state and since when: anyone can enumerate the bridge's users'
// network accounts and watch when each goes on- or offline.
func TestReviewHealthDoesNotListAccounts(t *testing.T) {
	db := testdb.Open(t, testdb.SQLite(t))
	ctx := context.Background()
	if _, err := db.Login.Upsert(ctx, &database.Login{ID: "alice@private.example", ConnectorID: "xmpp",
		MatrixUser: "@alice:example.org", State: connector.LoginConnected}); err != nil {
		t.Fatal(err)
	}
	c := New(db, nil, func() []string { return []string{"xmpp"} }, "1", zerolog.Nop())
	rec := httptest.NewRecorder()
	// No Authorization header.
	c.HealthHandler().ServeHTTP(rec, httptest.NewRequest("GET", HealthPath, nil))
	if body := rec.Body.String(); strings.Contains(body, "alice@private.example") {
		t.Errorf("the unauthenticated health body names a user's network account: %s", body)
	}
}
