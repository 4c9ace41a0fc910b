package bridge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// badTransaction is one malformed PUT to the appservice endpoint.
type badTransaction struct {
	kind, token string
	body        []byte
}

// badTransactions builds n malformed transactions aimed at the portal room:
// if any of them were taken for a real event, the connector or the room
// would show it. huge of them are over the bridge's 64 MiB limit.
func badTransactions(rnd *rand.Rand, n, huge int, roomID id.RoomID, alice id.UserID, hsToken string) []badTransaction {
	event := func(i int, content any) map[string]any {
		return map[string]any{"event_id": fmt.Sprintf("$bad-%d", i), "room_id": roomID, "sender": alice,
			"type": "m.room.message", "origin_server_ts": time.Now().UnixMilli(), "content": content}
	}
	marshal := func(v any) []byte { b, _ := json.Marshal(v); return b }
	var out []badTransaction
	for i := 0; len(out) < n; i++ {
		forged := marshal(map[string]any{"events": []any{event(i, map[string]any{"msgtype": "m.text", "body": fmt.Sprintf("forged %d", i)})}})
		var tx badTransaction
		switch {
		case i < huge:
			// Valid JSON up to the point the bridge stops reading.
			tx = badTransaction{"huge body", hsToken, append(append([]byte(`{"events":[],"pad":"`), bytes.Repeat([]byte("x"), 64<<20)...), `"}`...)}
		default:
			switch rnd.IntN(9) {
			case 0:
				tx = badTransaction{"wrong token", "not-the-hs-token", forged}
			case 1:
				tx = badTransaction{"no token", "", forged}
			case 2:
				tx = badTransaction{"not JSON", hsToken, forged[:rnd.IntN(len(forged))]}
			case 3:
				tx = badTransaction{"events not a list", hsToken, []byte(`{"events":{"0":` + string(marshal(event(i, map[string]any{"body": "x"}))) + `}}`)}
			case 4:
				tx = badTransaction{"events not objects", hsToken, []byte(`{"events":[1,"x",null,[]]}`)}
			case 5:
				ev := event(i, map[string]any{"msgtype": "m.text", "body": "no id"})
				field := []string{"event_id", "room_id"}[rnd.IntN(2)]
				if rnd.IntN(2) == 0 {
					delete(ev, field)
				} else {
					ev[field] = 42
				}
				tx = badTransaction{"event head broken", hsToken, marshal(map[string]any{"events": []any{ev}})}
			case 6:
				contents := []any{"a string", []int{1}, map[string]any{"msgtype": map[string]any{"x": 1}, "body": "forged"},
					map[string]any{"msgtype": "m.text", "body": 7}, map[string]any{"msgtype": "m.text", "body": "forged", "m.relates_to": "up"},
					map[string]any{"msgtype": "m.text", "body": "forged", "m.new_content": "x", "m.mentions": 5}}
				tx = badTransaction{"event content broken", hsToken, marshal(map[string]any{"events": []any{event(i, contents[rnd.IntN(len(contents))])}})}
			case 7:
				tx = badTransaction{"ephemeral broken", hsToken, []byte(`{"events":[],"ephemeral":[{"type":"m.typing","room_id":"` + string(roomID) +
					`","content":{"user_ids":"@alice:localhost"}},{"type":"m.receipt","room_id":5,"content":[]},"x"]}`)}
			default:
				depth := 20000
				tx = badTransaction{"deep nesting", hsToken, []byte(`{"events":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`)}
			}
		}
		out = append(out, tx)
	}
	return out
}

// TestFaultMalformedTransactions PUTs malformed appservice transactions to
// the bridge while real traffic flows both ways. The real traffic is exact;
// nothing of the bad input reaches the connector or the room, and any row
// kept for it is finished, not pending.
func TestFaultMalformedTransactions(t *testing.T) {
	total, nReplies := faultSize(50, 500), faultSize(10, 100)
	testdb.EachParallel(t, func(t *testing.T, target testdb.Target) {
		s := newStack(t, target)
		f := s.connectFake(sdk.NewMemoryStore())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		stream, roomID := s.startStream(ctx, t, f, "remote", 30*time.Millisecond, 3*nReplies, 3*nReplies)
		s.waitMessage(roomID, "first")

		rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
		bad := badTransactions(rnd, total, faultSize(1, 5), roomID, s.alice.UserID, s.cfg.Appservice.HSToken)
		replies := s.sendReplies(ctx, t, roomID, nReplies, func() time.Duration { return time.Duration(rnd.IntN(100)) * time.Millisecond })
		statuses := map[string]map[int]int{}
		url := fmt.Sprintf("http://%s:%d/_matrix/app/v1/transactions/", s.cfg.Appservice.Hostname, s.cfg.Appservice.Port)
		client := &http.Client{Timeout: time.Minute}
		for i, tx := range bad {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%sbad-%d", url, i), bytes.NewReader(tx.body))
			if tx.token != "" {
				req.Header.Set("Authorization", "Bearer "+tx.token)
			}
			resp, err := client.Do(req)
			code := 0
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				code = resp.StatusCode
			}
			if statuses[tx.kind] == nil {
				statuses[tx.kind] = map[int]int{}
			}
			statuses[tx.kind][code]++
			if code >= 500 || (tx.token != s.cfg.Appservice.HSToken && code == http.StatusOK) {
				t.Errorf("%s: answered %d (%v)", tx.kind, code, err)
			}
		}
		t.Logf("answers by kind: %v", statuses)
		accepted := 0
		for _, codes := range statuses {
			accepted += codes[http.StatusOK]
		}
		var txns int
		if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM as_txn WHERE txn_id LIKE 'bad-%'").Scan(&txns); err != nil {
			t.Fatal(err)
		}
		if txns > accepted {
			t.Errorf("%d bad transaction ids stored, but only %d were answered 200", txns, accepted)
		}
		sent := stream.finish(ctx, t)
		toNetwork := replies.wait(t, f)
		sent = append(sent, sortedKeys(toNetwork)...)
		for _, c := range f.commandsOf(connector.OpSendMessage) {
			if strings.HasPrefix(c.Txn, "$bad") || strings.HasPrefix(c.Text, "forged") {
				t.Errorf("bad input reached the network: %+v", c)
			}
		}
		tally(fmt.Sprintf("malformed transactions x%d: replies at the connector", len(bad)), target.Name, sortedKeys(toNetwork), toNetwork).check(t)

		// Network → Matrix, and the room as a whole.
		got := s.waitTimeline(t, roomID, sent, 3*time.Minute)
		r := tally(fmt.Sprintf("malformed transactions x%d: room timeline", len(bad)), target.Name, sent, got)
		r.check(t)
		s.explainMissing(t, roomID, r)
		// The only messages nobody sent may be the bridge's notices
		// about bad events it parked: every parked event is told.
		want := map[string]bool{}
		for _, b := range sent {
			want[b] = true
		}
		for body, n := range got {
			if !want[body] && !(strings.HasPrefix(body, "⚠️ Your ") && strings.Contains(body, " was not delivered: ")) {
				t.Errorf("%d× a message in the room that nobody sent: %q", n, body)
			}
		}
		var pending, kept int
		if err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*), COALESCE(SUM(CASE WHEN done THEN 0 ELSE 1 END), 0) FROM mx_event WHERE event_id LIKE '$bad-%'").Scan(&kept, &pending); err != nil {
			t.Fatal(err)
		}
		t.Logf("rows kept for bad events: %d (pending %d)", kept, pending)
		if pending != 0 {
			t.Errorf("%d rows of bad events still pending", pending)
		}
	})
}

// replyStream is the user writing in the portal while a fault is injected.
type replyStream struct{ ids chan []id.EventID }

// sendReplies sends "reply 1".."reply n" as alice, gap() apart.
func (s *stack) sendReplies(ctx context.Context, t *testing.T, roomID id.RoomID, n int, gap func() time.Duration) *replyStream {
	r := &replyStream{ids: make(chan []id.EventID, 1)}
	go func() {
		var ids []id.EventID
		for i := 1; i <= n; i++ {
			resp, err := s.alice.SendText(ctx, roomID, fmt.Sprintf("reply %d", i))
			if err != nil {
				t.Errorf("reply %d: %v", i, err)
				break
			}
			ids = append(ids, resp.EventID)
			time.Sleep(gap())
		}
		r.ids <- ids
	}()
	return r
}

// wait waits until the replies were sent and reached the fake connector (or
// a timeout passes), and returns how often each reached it, by body.
func (r *replyStream) wait(t *testing.T, f *fakeConnector) map[string]int {
	t.Helper()
	ids := <-r.ids
	deadline := time.Now().Add(2 * time.Minute)
	for len(f.commandsOf(connector.OpSendMessage)) < len(ids) && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	perTxn := map[string]int{}
	for _, c := range f.commandsOf(connector.OpSendMessage) {
		perTxn[c.Txn]++
	}
	out := map[string]int{}
	for i, evtID := range ids {
		out[fmt.Sprintf("reply %d", i+1)] = perTxn[string(evtID)]
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
