package portal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
)

// Tests from a review (helper agent): what the user is told about a login
// its connector's hello no longer names, or names as logged out.

// helloConn is unitConn whose hello names the given logins.
type helloConn struct {
	*unitConn
	logins []connector.Login
}

func (c *helloConn) Hello(id string) (*connector.Hello, bool) {
	h, ok := c.unitConn.Hello(id)
	h.Logins = c.logins
	return h, ok
}

// TestLoginDroppedFromHelloStaysConnected: the connector no longer holds
// alice's login (the admin removed the account; its current hello does not
// name it). The bridge kept showing the login as it last was, "connected",
// in `ping` and never alerted: alice's portals looked bridged while
// nothing could reach them.
func TestLoginDroppedFromHelloStaysConnected(t *testing.T) {
	u, _ := newUnitPortal(t)
	u.m.SetConnector(&helloConn{unitConn: u.conn, logins: []connector.Login{
		{ID: "other", MatrixUser: "@bob:x", State: connector.LoginConnected},
	}})
	login, err := u.db.Login.Get(context.Background(), unitLoginID)
	if err != nil {
		t.Fatal(err)
	}
	if st := u.m.LoginStatus(login); st.State == connector.LoginConnected || !st.NotHeld {
		t.Errorf("login %s is not in its connector's hello any more, yet its status is %q (not held: %v)", unitLoginID, st.State, st.NotHeld)
	}
}

// TestLoginNotHeldIsAlertedAndRecovers: a login its connected connector's
// hello names for another user is alerted once login_alert_after passed,
// saying the connector no longer holds it, and the all-clear follows once
// a hello names it for its owner again.
func TestLoginNotHeldIsAlertedAndRecovers(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	if err := u.db.User.SetManagementRoom(ctx, unitUser, "!mgmt:x"); err != nil {
		t.Fatal(err)
	}
	u.m.cfg.Bridge.LoginAlertAfter = config.Duration(20 * time.Millisecond)
	hc := &helloConn{unitConn: u.conn, logins: []connector.Login{{ID: unitLoginID, MatrixUser: "@bob:x"}}}
	u.m.SetConnector(hc)
	u.m.checkLogins(ctx) // the bridge first sees it missing
	time.Sleep(30 * time.Millisecond)
	u.m.checkLogins(ctx)
	alerts := u.notices(t)
	if len(alerts) != 1 || !strings.Contains(alerts[0], "no longer holds it") {
		t.Fatalf("alerts %q, want one saying the connector no longer holds the login", alerts)
	}
	u.m.checkLogins(ctx)
	if n := len(u.notices(t)); n != 1 {
		t.Errorf("%d alerts after another look, want the one", n)
	}

	// The connector names alice again (a new connection's hello, stored).
	hc.logins = []connector.Login{{ID: unitLoginID, MatrixUser: string(unitUser), State: connector.LoginConnected}}
	if refused := u.m.Hello(ctx, unitConnID, &connector.Hello{Logins: hc.logins}); len(refused) != 0 {
		t.Fatalf("hello refused: %+v", refused)
	}
	u.m.checkLogins(ctx)
	alerts = u.notices(t)
	if len(alerts) != 2 || !strings.Contains(alerts[1], "connected again") {
		t.Errorf("alerts %q, want the all-clear after the trouble", alerts)
	}
}

// runningUnit marks u's manager as running, as Start does, for work that
// waits for it (endLoggedOut), without starting its loops.
func runningUnit(u *unit) { close(u.m.running) }

// waitPortals waits for the login's portals to number n, and returns how
// many there are.
func waitPortals(t *testing.T, u *unit, n int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		portals, err := u.db.Portal.ByLogin(context.Background(), unitLoginID)
		if err != nil {
			t.Fatal(err)
		}
		if len(portals) == n || time.Now().After(deadline) {
			return len(portals)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHelloBadCredentialsLeavesPortals: a login event with
// bad_credentials ends every portal of the login (loginGone: farewell,
// queued commands failed, m.direct entry and ghost removed). The same state
// announced in a hello (the connector restarted meanwhile, or reports it
// there only) was just stored: the portals stayed, still looking bridged,
// while the alert told the user its chats are not bridged. (Adapted: the
// hello queues the work, so the test waits for it.)
func TestHelloBadCredentialsLeavesPortals(t *testing.T) {
	u, p := newUnitPortal(t)
	runningUnit(u)
	refused := u.m.Hello(context.Background(), unitConnID, &connector.Hello{Logins: []connector.Login{
		{ID: unitLoginID, MatrixUser: string(unitUser), State: connector.LoginBadCredentials},
	}})
	if len(refused) != 0 {
		t.Fatalf("hello refused: %+v", refused)
	}
	login, _ := u.db.Login.Get(context.Background(), unitLoginID)
	if login.State != connector.LoginBadCredentials {
		t.Fatalf("state %q", login.State)
	}
	if n := waitPortals(t, u, 0); n != 0 {
		t.Errorf("login announced with bad_credentials in a hello still has %d portal(s); the login event would have ended them", n)
	}
	told := false
	for _, c := range u.sends() {
		body, _ := c.Content["body"].(string)
		told = told || (c.RoomID == p.RoomID && strings.Contains(body, "logged out"))
	}
	if !told {
		t.Error("the portal ended without the farewell")
	}
}

// TestHelloBadCredentialsOvertaken: a login event bringing the login back
// before the queued work runs keeps its portals.
func TestHelloBadCredentialsOvertaken(t *testing.T) {
	u, _ := newUnitPortal(t)
	ctx := context.Background()
	u.m.Hello(ctx, unitConnID, &connector.Hello{Logins: []connector.Login{
		{ID: unitLoginID, MatrixUser: string(unitUser), State: connector.LoginBadCredentials},
	}})
	// Not running yet: the work waits, and the login comes back meanwhile.
	u.remote(t, &connector.Event{Kind: connector.KindLogin, ID: "back", State: connector.LoginConnected})
	runningUnit(u)
	time.Sleep(100 * time.Millisecond) // for endLoggedOut to queue its work
	u.drainLanes()
	if n := waitPortals(t, u, 1); n != 1 {
		t.Errorf("the login is connected again, but %d portals are left, want 1", n)
	}
}
