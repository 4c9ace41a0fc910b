package bridge_test

import (
	"bytes"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// TestEncryptedSendInDoubt: a ghost's encrypted send lands in the room but
// its answer never reaches the bridge (the homeserver stored it, then the
// connection broke), and the homeserver does not remember its transaction
// id. In an encrypted room the event's type and the bridge's transaction id
// are inside the ciphertext: the bridge must open its own event (decryptOwn)
// to recognise it, or it sends the message again and the user sees it twice.
func TestEncryptedSendInDoubt(t *testing.T) {
	testdb.Each(t, testEncryptedSendInDoubt)
}

func testEncryptedSendInDoubt(t *testing.T, target testdb.Target) {
	s := newStack(t, target, stackOptions{encryption: true, hsProxy: true,
		configure: func(cfg *config.Config) {
			// Short, so that a bridge that cannot find its event sends
			// again well within the test's wait.
			cfg.Bridge.InDoubtGrace = config.Duration(time.Second)
			cfg.Bridge.RetryMaxDelay = config.Duration(time.Second)
		}})
	f := s.connectFake(nil)
	ghost := s.ghost("bob@network")
	nio := startNio(t, s, "alice")
	nio.do(map[string]any{"cmd": "create_dm", "ghost": string(ghost), "text": "hello bob"})
	waitSent(t, f, 1)
	f.send(textFrom("bob@network", "r1", "first answer"))
	nio.do(map[string]any{"cmd": "expect", "body": "first answer", "timeout": 60})

	// The ghost's next encrypted send is stored by Dendrite under another
	// transaction id (so Dendrite's transaction cache cannot answer the
	// retry), and the bridge gets a 502.
	var cut atomic.Int32
	s.proxy.setRefuse(func(r *http.Request, body []byte) (int, string) {
		if r.Method != http.MethodPut || !strings.Contains(r.URL.Path, "/send/m.room.encrypted/") ||
			r.URL.Query().Get("user_id") != string(ghost) || !cut.CompareAndSwap(0, 1) {
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
	f.send(textFrom("bob@network", "r2", "answer in doubt"))
	got := nio.do(map[string]any{"cmd": "expect", "body": "answer in doubt", "timeout": 60})
	if got["encrypted"] != true || got["sender"] != string(ghost) {
		t.Fatalf("message as the client saw it = %v, want encrypted by the ghost", got)
	}
	if cut.Load() != 1 {
		t.Fatal("the ghost's encrypted send was never cut off")
	}
	// The retry must have found the event; a resend would show by now
	// (the grace is 1 s, retries at most 1 s apart).
	if n := nio.do(map[string]any{"cmd": "count", "body": "answer in doubt", "wait": 8})["count"]; n != float64(1) {
		t.Fatalf("the user sees the message %v times, want once", n)
	}
	f.send(textFrom("bob@network", "r3", "after the doubt"))
	nio.do(map[string]any{"cmd": "expect", "body": "after the doubt", "timeout": 60})
}
