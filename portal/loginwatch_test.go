package portal

import (
	"context"
	"encoding/json"
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

// TestLoginRecoveryToldOnce: the alert that a login is back, sent again by
// a process killed after the send but before recording it, carries the same
// transaction id, so the user reads it once; the recovery from a later
// trouble episode is a new alert.
func TestLoginRecoveryToldOnce(t *testing.T) {
	u := newUnit(t, false)
	ctx := context.Background()
	if err := u.db.User.SetManagementRoom(ctx, unitUser, "!mgmt:x"); err != nil {
		t.Fatal(err)
	}
	recovered := func(since time.Time) {
		l := *u.login
		l.Alerted, l.State, l.StateSince = troubleDisconnected, connector.LoginConnected, since
		u.m.alertLogin(ctx, &l, "", LoginStatus{State: connector.LoginConnected, Since: since})
	}
	back := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	recovered(back)
	time.Sleep(5 * time.Millisecond)
	recovered(back) // the next process, after a kill before SetAlerted
	later := back.Add(time.Minute)
	recovered(later)
	var alerts []string
	for _, raw := range u.hs.Timeline("!mgmt:x") {
		var evt struct {
			Content map[string]any `json:"content"`
		}
		_ = json.Unmarshal(raw, &evt)
		alerts = append(alerts, evt.Content["body"].(string))
	}
	if len(alerts) != 2 {
		t.Errorf("the management room shows %d alerts, want 2 (one per recovery): %q", len(alerts), alerts)
	}
}
