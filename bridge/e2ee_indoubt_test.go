package bridge_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestEncryptedSendInDoubt: an encrypted send of the bridge lands in the
// room but its answer never reaches the bridge (the homeserver stored it,
// then the connection broke), and the homeserver does not remember its
// transaction id. In an encrypted room the event's type and the bridge's
// transaction id are inside the ciphertext: the bridge must open its own
// event (decryptOwn) to recognise it, or it sends the message again and the
// user sees it twice. Both a ghost's message and a double-puppeted echo
// (encrypted with the ghost's session, sent as the user) are cut off once.
func TestEncryptedSendInDoubt(t *testing.T) {
	testdb.EachParallel(t, testEncryptedSendInDoubt)
}

func testEncryptedSendInDoubt(t *testing.T, target testdb.Target) {
	s := newStack(t, target, stackOptions{encryption: true, hsProxy: true,
		configure: func(cfg *config.Config) {
			// Short, so that a bridge that cannot find its event sends
			// again well within the test's wait.
			cfg.Bridge.InDoubtGrace = config.Duration(time.Second)
			cfg.Bridge.RetryMaxDelay = config.Duration(time.Second)
		}})
	f, ghost, nio, _ := encryptedDMWithBob(t, s, "hello bob", "first answer")

	for _, c := range []struct {
		name string
		from id.UserID
		ev   *connector.Event
		own  bool
	}{
		{"ghost", ghost, textFrom("bob@network", "r2", "answer in doubt"), false},
		{"double puppet", s.alice.UserID, &connector.Event{Kind: connector.KindMessage, Login: testLogin, TS: time.Now().UnixMilli(),
			Chat: dmChat("bob@network"), Sender: &connector.Sender{ID: testLogin, IsMe: true}, ID: "me1", Text: "echo in doubt"}, true},
	} {
		cut := s.cutNextEncryptedSend(t, c.from)
		f.send(c.ev)
		got := nio.do(map[string]any{"cmd": "expect", "own": c.own, "body": c.ev.Text, "timeout": 60})
		if got["encrypted"] != true || got["sender"] != string(c.from) {
			t.Fatalf("%s: message as the client saw it = %v, want encrypted, sent by %s", c.name, got, c.from)
		}
		if cut.Load() != 1 {
			t.Fatalf("%s: the encrypted send was never cut off", c.name)
		}
		// The retry must have found the event; a resend would show by now
		// (the grace is 1 s, retries at most 1 s apart).
		if n := nio.do(map[string]any{"cmd": "count", "own": c.own, "body": c.ev.Text, "wait": 8})["count"]; n != float64(1) {
			t.Fatalf("%s: the user sees the message %v times, want once", c.name, n)
		}
	}
	s.proxy.setRefuse(nil)
	f.send(textFrom("bob@network", "r3", "after the doubt"))
	nio.do(map[string]any{"cmd": "expect", "body": "after the doubt", "timeout": 60})
	if n := len(f.commandsOf(connector.OpSendMessage)); n != 1 {
		t.Fatalf("%d send_message commands, want only the user's first message (the echo is not sent back)", n)
	}
}

// cutNextEncryptedSend makes the next m.room.encrypted send of sender land
// in the room under another transaction id (so that Dendrite's transaction
// cache cannot answer the retry), while the bridge gets a 502. The counter
// says how many were cut (at most one).
func (s *stack) cutNextEncryptedSend(t *testing.T, sender id.UserID) *atomic.Int32 {
	var cut atomic.Int32
	s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/send/m.room.encrypted/") ||
			r.URL.Query().Get("user_id") != string(sender) || !cut.CompareAndSwap(0, 1) {
			return 0, ""
		}
		u := s.hs.URL + strings.Replace(r.URL.RequestURI(), "/send/m.room.encrypted/", "/send/m.room.encrypted/lost-", 1)
		req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return http.StatusBadGateway, "M_UNKNOWN"
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("forwarding the send to Dendrite: %v %v", resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
		return http.StatusBadGateway, "M_UNKNOWN"
	})
	return &cut
}
