package appservice_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// FuzzTransactionIntake PUTs arbitrary transactions to the appservice
// endpoint of a link on a SQLite database. Properties: the answer is a
// Matrix JSON response, never a 5xx for what the homeserver sent (a 5xx
// makes it retry the same transaction forever); a refused transaction stores
// nothing; an accepted one stores only events its body carries, each once
// (a malformed one as a parked row named after its hash),
// and a wrong token is always refused.
func FuzzTransactionIntake(f *testing.F) {
	seeds := []string{
		`{"events":[{"event_id":"$e1","room_id":"!r:localhost","sender":"@alice:localhost","type":"m.room.message","origin_server_ts":1,"content":{"msgtype":"m.text","body":"hi"}}]}`,
		`{"events":[],"ephemeral":[{"type":"m.typing","room_id":"!r:localhost","content":{"user_ids":["@alice:localhost"]}}]}`,
		`{"events":[{"event_id":"$e2","room_id":"!r:localhost","type":"m.room.member","state_key":"@alice:localhost","sender":"@alice:localhost","content":{"membership":"invite","is_direct":true}}]}`,
		`{"events":[{"event_id":"$e3","room_id":"!r:localhost","type":"m.room.message","content":"not an object"}]}`,
		`{"events":[{"event_id":5,"room_id":"!r:localhost"}]}`,
		`{"events":[{"room_id":"!r:localhost"}]}`,
		`{"events":[{"event_id":"$e4","room_id":"!r:localhost"},{"event_id":"$e4","room_id":"!r:localhost"}]}`,
		`{"events":"nope"}`, `{"events":[1,null,"x"]}`, `[]`, `null`, `{}`, `{"events":[{`,
		`{"de.sorunome.msc2409.ephemeral":[{"type":"m.receipt","room_id":"!r:localhost","content":{"$e1":{"m.read":{"@alice:localhost":{"ts":1}}}}}]}`,
	}
	for i, s := range seeds {
		f.Add("txn"+string(rune('a'+i)), []byte(s), true)
	}
	f.Add("txn-wrong", []byte(seeds[0]), false)

	target := testdb.SQLite(f)
	db := testdb.Open(f, target)
	link, err := appservice.New(context.Background(), testConfig(), db, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	link.SetSink(&countingSink{})
	handler := link.Handler()

	f.Fuzz(func(t *testing.T, txnID string, body []byte, rightToken bool) {
		// "." and ".." are path segments the router cleans away, not ids.
		if txnID == "" || txnID == "." || txnID == ".." || strings.ContainsAny(txnID, "/?#%") {
			return
		}
		token := "hs-secret"
		if !rightToken {
			token = "hs-secret-but-not-quite"
		}
		before := storedIDs(t, db)
		txnsBefore := countRows(t, db, "as_txn")
		req := httptest.NewRequest(http.MethodPut, "/_matrix/app/v1/transactions/"+url.PathEscape(txnID), strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)

		if rec.Code >= 500 {
			t.Fatalf("answered %d %s: the homeserver would retry this forever", rec.Code, rec.Body)
		}
		var answer map[string]any
		if json.Unmarshal(rec.Body.Bytes(), &answer) != nil {
			t.Fatalf("answer %q is not a JSON object", rec.Body)
		}
		after := storedIDs(t, db)
		if !rightToken && rec.Code == http.StatusOK {
			t.Fatal("a wrong token was accepted")
		}
		if rec.Code != http.StatusOK {
			if len(after) != len(before) || countRows(t, db, "as_txn") != txnsBefore {
				t.Fatalf("refused transaction (%d %s) stored something", rec.Code, rec.Body)
			}
			return
		}
		inBody := eventIDsIn(body)
		for evID := range after {
			if before[evID] || inBody[evID] {
				continue
			}
			// A malformed event is kept only as a parked row named after
			// its hash, so the homeserver's retry stores it once and
			// nothing ever acts on it.
			var done bool
			var errMsg string
			err := db.QueryRow(context.Background(), "SELECT done, error FROM mx_event WHERE event_id=$1", evID).Scan(&done, &errMsg)
			if err != nil || !strings.HasPrefix(evID, "malformed:") || !done || errMsg == "" {
				t.Fatalf("stored event %q that the body does not carry (done %v, error %q, %v)", evID, done, errMsg, err)
			}
		}
	})
}

// storedIDs is the set of event ids in mx_event; the column is unique, so a
// set loses nothing.
func storedIDs(t *testing.T, db *database.Database) map[string]bool {
	t.Helper()
	rows, err := db.Query(context.Background(), "SELECT event_id FROM mx_event")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err = rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out[s] = true
	}
	return out
}

// eventIDsIn reads the event ids of a transaction body the lenient way: any
// string event_id of any object in events.
func eventIDsIn(body []byte) map[string]bool {
	var txn struct {
		Events []json.RawMessage `json:"events"`
	}
	out := map[string]bool{}
	_ = json.Unmarshal(body, &txn)
	for _, raw := range txn.Events {
		var head struct {
			ID string `json:"event_id"`
		}
		if json.Unmarshal(raw, &head) == nil && head.ID != "" {
			out[head.ID] = true
		}
	}
	return out
}

// FuzzParseEvent: a stored event, whatever its shape, parses or fails with
// an error; it never panics the dispatcher, and a parsed event keeps the id
// it was stored under.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"event_id":"$e1","room_id":"!r:hs","sender":"@a:hs","type":"m.room.message","content":{"msgtype":"m.text","body":"hi"}}`))
	f.Add([]byte(`{"event_id":"$e2","room_id":"!r:hs","type":"m.room.member","state_key":"@a:hs","content":{"membership":5}}`))
	f.Add([]byte(`{"event_id":"$e3","type":"m.reaction","content":{"m.relates_to":{"rel_type":"m.annotation","event_id":"$e1","key":"👍"}}}`))
	f.Add([]byte(`{"event_id":"$e4","type":"m.room.message","content":{"body":["x"],"m.new_content":{"body":1}}}`))
	f.Add([]byte(`{"type":"m.room.encrypted","content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evt, err := appservice.ParseEvent(data)
		if err == nil && evt == nil {
			t.Fatal("no event and no error")
		}
		var head struct {
			ID string `json:"event_id"`
		}
		if err == nil && json.Unmarshal(data, &head) == nil && string(evt.ID) != head.ID {
			t.Fatalf("parsed event id %q, stored %q", evt.ID, head.ID)
		}
	})
}
