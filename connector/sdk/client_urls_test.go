package sdk

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// TestClientDialsTheNextURL: with two bridge instances, a standby (503) and
// a dead one before the active, the client goes on to the next URL at once
// and delivers its events to the one that answers.
func TestClientDialsTheNextURL(t *testing.T) {
	h := connectortest.NewHarness(t, nil)
	standby := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "standby", http.StatusServiceUnavailable)
	}))
	defer standby.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := "ws" + dead.URL[len("http"):]
	dead.Close()
	c := NewClient(ClientOptions{
		URL:   "ws" + standby.URL[len("http"):],
		URLs:  []string{deadURL, h.URL},
		Token: connectortest.Token, Hello: *connectortest.Hello("c"), Log: connectortest.Log(t),
		// A long backoff: only dialling the next URL at once can pass.
		MinBackoff: time.Minute,
	})
	runClient(t, c)
	ctx := ctxTimeout(t, 20*time.Second)
	if _, err := c.Send(ctx, connectortest.Message(1)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitAcked(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := h.Store.Snapshot("c"); len(got) != 1 {
		t.Errorf("active stored %d events, want 1", len(got))
	}
	if c.url() != h.URL {
		t.Errorf("client stays with %s, want the active %s", c.url(), h.URL)
	}
}

// TestGateStopsAcks: once the gate refuses (this instance lost its lease),
// an event is stored but not acked, and the connection goes away without
// another frame.
func TestGateStopsAcks(t *testing.T) {
	var fenced atomic.Bool
	h := connectortest.NewHarness(t, func(o *server.Options) {
		o.Gate = func() error {
			if fenced.Load() {
				return errors.New("fenced")
			}
			return nil
		}
	})
	rc, _ := h.Connect(t, "c")
	connectortest.SendEvent(t, rc, 1, connectortest.Message(1))
	connectortest.WaitAck(t, rc, 1)
	fenced.Store(true)
	connectortest.SendEvent(t, rc, 2, connectortest.Message(2))
	for {
		f, err := rc.ReadFrame(5 * time.Second)
		if err != nil {
			break
		}
		if f.Type == connector.TypeAck && f.Seq >= 2 {
			t.Fatalf("acked %d through a closed gate", f.Seq)
		}
	}
	if _, err := h.Srv.Command(ctxTimeout(t, 5*time.Second), "c", "send", &connector.Command{}); err == nil {
		t.Error("a command went out through a closed gate")
	}
}
