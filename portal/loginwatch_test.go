package portal

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
)

// TestLoginAlertFinishedAtStop: an alert whose send is under way when the
// bridge stops (its context cancelled) is still sent and recorded, so that
// the next process does not send it again (Dendrite does not remember the
// transaction id of a request cancelled midway, and shows the event twice).
func TestLoginAlertFinishedAtStop(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	if err := u.db.User.SetManagementRoom(ctx, unitUser, "!mgmt:x"); err != nil {
		t.Fatal(err)
	}
	stopping, cancel := context.WithCancel(ctx)
	cancel()
	st := LoginStatus{State: connector.LoginDisconnected, Since: time.Now().Add(-time.Minute)}
	u.m.alertLogin(stopping, u.login, troubleDisconnected, st)

	var sent int
	for _, c := range u.hs.Calls("SendMessageEvent") {
		if c.RoomID == "!mgmt:x" {
			sent++
		}
	}
	if sent != 1 {
		t.Errorf("%d alerts sent to the management room, want 1", sent)
	}
	l, err := u.db.Login.Get(ctx, u.login.ID)
	if err != nil || l == nil || l.Alerted != troubleDisconnected {
		t.Fatalf("login after the alert: %+v, %v; want it recorded as alerted", l, err)
	}
}
