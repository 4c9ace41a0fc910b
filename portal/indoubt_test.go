package portal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/matrix"
)

// roomTimeline answers /messages with a fixed timeline, newest first, and
// counts the calls.
type roomTimeline struct {
	mu     sync.Mutex
	events []map[string]any
	reads  int
}

func (r *roomTimeline) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	_ = json.NewEncoder(w).Encode(map[string]any{"chunk": r.events, "start": "s1"})
}

func inDoubtSetup(t *testing.T, target testdb.Target, timeline *roomTimeline, started time.Time) (*Manager, matrix.API) {
	t.Helper()
	db := testdb.Open(t, target)
	hs := httptest.NewServer(timeline)
	t.Cleanup(hs.Close)
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration: &mas.Registration{AppToken: "as", ServerToken: "hs"}, HomeserverDomain: "x", HomeserverURL: hs.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Bridge.InDoubtGrace = config.Duration(300 * time.Millisecond)
	return &Manager{db: db, cfg: cfg, started: started}, matrix.NewIntents(as).Ghost("@ghost:x", false)
}

func testSend(intent matrix.API, sends *int, result func() (*mautrix.RespSendEvent, error)) *remoteSend {
	return &remoteSend{
		intent: intent, roomID: "!r:x", key: database.PortalKey{LoginID: "l", ChatID: "c"}, remoteID: "m1",
		eventType: event.EventMessage, txnID: "dmb_t1",
		send: func(ctx context.Context, txnID string) (*mautrix.RespSendEvent, error) {
			*sends++
			return result()
		},
	}
}

func ownEvent(sender, txn string) map[string]any {
	return map[string]any{
		"type": "m.room.message", "sender": sender, "event_id": "$" + sender + txn, "room_id": "!r:x",
		"content": map[string]any{"msgtype": "m.text", "body": "hi", contentTxnKey: txn},
	}
}

// A send left in doubt by an earlier process is looked for in the room after
// the grace period: found, it is used and nothing is sent; a copy by someone
// else is not taken for it; not found, it is sent again with the same id.
func TestSendInDoubtResolvedAgainstRoom(t *testing.T) {
	testdb.Each(t, func(t *testing.T, target testdb.Target) {
		ctx := context.Background()
		timeline := &roomTimeline{events: []map[string]any{ownEvent("@user:x", "dmb_t1"), ownEvent("@ghost:x", "dmb_t1")}}
		started := time.Now()
		m, intent := inDoubtSetup(t, target, timeline, started)
		marker := &database.InDoubtSend{TxnID: "dmb_t1", RoomID: "!r:x", PortalKey: database.PortalKey{LoginID: "l", ChatID: "c"},
			RemoteID: "m1", EventType: "m.room.message", StartedAt: started.Add(-time.Second)}
		if err := m.db.InDoubt.Begin(ctx, marker); err != nil {
			t.Fatal(err)
		}
		sends := 0
		s := testSend(intent, &sends, func() (*mautrix.RespSendEvent, error) { return &mautrix.RespSendEvent{EventID: "$new"}, nil })
		before := time.Now()
		got, err := m.sendRemote(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if got != "$@ghost:xdmb_t1" || sends != 0 {
			t.Fatalf("found %q after %d sends, want the ghost's event and no send", got, sends)
		}
		// It is there: no need to wait for the grace period.
		if wait := time.Since(before); wait >= 300*time.Millisecond {
			t.Errorf("found the landed event after %s, not at once", wait)
		}

		// Only someone else's copy in the room: look, wait for the
		// grace period, look again, send again.
		timeline.mu.Lock()
		timeline.events = timeline.events[:1]
		reads := timeline.reads
		timeline.mu.Unlock()
		marker.StartedAt = time.Now().Add(-time.Second)
		if err := m.db.InDoubt.Begin(ctx, marker); err != nil {
			t.Fatal(err)
		}
		m.started = time.Now()
		if got, err = m.sendRemote(ctx, s); err != nil {
			t.Fatal(err)
		}
		if got != "$new" || sends != 1 {
			t.Fatalf("got %q after %d sends, want a new send", got, sends)
		}
		if wait := time.Since(m.started); wait < 300*time.Millisecond || timeline.reads-reads != 2 {
			t.Errorf("sent again after %s and %d looks, want the grace period and two looks", wait, timeline.reads-reads)
		}
	})
}

// The marker is in place while the request is out; a refused request clears
// it, a cut-off one leaves it for the next attempt.
func TestSendInDoubtMarker(t *testing.T) {
	target := testdb.Targets(t)[0]
	ctx := context.Background()
	timeline := &roomTimeline{}
	m, intent := inDoubtSetup(t, target, timeline, time.Now())
	sends := 0
	var result error
	s := testSend(intent, &sends, func() (*mautrix.RespSendEvent, error) {
		if marker, err := m.db.InDoubt.Get(ctx, "dmb_t1"); err != nil || marker == nil {
			t.Errorf("no marker during the send: %v", err)
		}
		if result != nil {
			return nil, result
		}
		return &mautrix.RespSendEvent{EventID: "$sent"}, nil
	})
	result = mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusForbidden}, Message: "refused"}
	if _, err := m.sendRemote(ctx, s); err == nil {
		t.Fatal("refused send reported success")
	}
	if marker, _ := m.db.InDoubt.Get(ctx, "dmb_t1"); marker != nil {
		t.Error("marker kept after the homeserver refused the send")
	}
	result = mautrix.HTTPError{WrappedError: context.DeadlineExceeded, Message: "request error"}
	if _, err := m.sendRemote(ctx, s); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cut-off send: %v", err)
	}
	if marker, _ := m.db.InDoubt.Get(ctx, "dmb_t1"); marker == nil {
		t.Fatal("marker gone after a send that was cut off")
	}
	// The next attempt of this process waits from now, then looks.
	result = nil
	before := time.Now()
	if _, err := m.sendRemote(ctx, s); err != nil {
		t.Fatal(err)
	}
	if time.Since(before) < 300*time.Millisecond || timeline.reads != 2 || sends != 3 {
		t.Errorf("retry after %s, %d reads, %d sends; want a look, a wait, a look and a send", time.Since(before), timeline.reads, sends)
	}
}

func TestSettleTime(t *testing.T) {
	base := time.Unix(1000, 0)
	grace := 10 * time.Second
	for _, c := range []struct {
		name                           string
		started, process, former, want time.Time
	}{
		{"earlier process", base, base.Add(time.Minute), time.Time{}, base.Add(time.Minute + grace)},
		{"this process", base.Add(2 * time.Minute), base.Add(time.Minute), time.Time{}, base.Add(3*time.Minute + grace)},
		// High availability: the former active's requests had arrived when
		// its lease expired, before this process was elected and started.
		{"former active", base, base.Add(time.Minute), base.Add(30 * time.Second), base.Add(30*time.Second + grace)},
		{"former active, marker after its expiry (clock skew)", base.Add(40 * time.Second), base.Add(time.Minute), base.Add(30 * time.Second), base.Add(40*time.Second + grace)},
		{"this active's own send", base.Add(2 * time.Minute), base.Add(time.Minute), base.Add(30 * time.Second), base.Add(3*time.Minute + grace)},
	} {
		now := base.Add(3 * time.Minute)
		if got := settleTime(c.started, c.process, c.former, now, grace); !got.Equal(c.want) {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestMatchOwnEventByID(t *testing.T) {
	evts := []*event.Event{
		{ID: "$a", Sender: "@g:x", Type: event.EventMessage, Content: event.Content{Raw: map[string]any{contentTxnKey: "other"}}},
		{ID: "$b", Sender: "@g:x", Type: event.EventReaction, Content: event.Content{Raw: map[string]any{contentTxnKey: "t"}}},
		{ID: "$c", Sender: "@g:x", Type: event.EventMessage, Content: event.Content{Raw: map[string]any{contentTxnKey: "t"}}},
	}
	if got := matchOwnEvent(evts, id.UserID("@g:x"), event.EventMessage, "t"); got != "$c" {
		t.Errorf("matched %q, want $c", got)
	}
}

func TestSendNeverArrived(t *testing.T) {
	status := func(code int) error {
		return fmt.Errorf("send: %w", mautrix.HTTPError{Response: &http.Response{StatusCode: code}, Message: "answer"})
	}
	dial := mautrix.HTTPError{Message: "request error", WrappedError: &url.Error{Op: "Put", URL: "http://hs",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}}
	dropped := mautrix.HTTPError{Message: "request error", WrappedError: &url.Error{Op: "Put", URL: "http://hs",
		Err: &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}}}
	for name, c := range map[string]struct {
		err  error
		want bool
	}{
		"refused event":      {status(http.StatusRequestEntityTooLarge), true},
		"rate limited":       {status(http.StatusTooManyRequests), true},
		"connection refused": {dial, true},
		"bad gateway":        {status(http.StatusBadGateway), false},
		"connection reset":   {dropped, false},
		"timeout":            {mautrix.HTTPError{Message: "request error", WrappedError: context.DeadlineExceeded}, false},
		"cancelled":          {context.Canceled, false},
	} {
		if got := sendNeverArrived(c.err); got != c.want {
			t.Errorf("%s: never arrived = %v, want %v", name, got, c.want)
		}
	}
}
