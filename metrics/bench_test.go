package metrics

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/testdb"
)

// BenchmarkRemoteMessage is the instrumentation one connector event pays on
// its way through the bridge: its intake time noted, then counted and
// timed when applied.
func BenchmarkRemoteMessage(b *testing.B) {
	m := New()
	now := time.Now()
	b.ReportAllocs()
	for i := range b.N {
		m.RemoteTakenIn("xmpp", int64(i), now)
		m.RemoteApplied("xmpp", int64(i), "message")
	}
}

// BenchmarkCommand is the same for a Matrix message sent to the connector.
func BenchmarkCommand(b *testing.B) {
	m := New()
	now := time.Now()
	txns := make([]string, 1024)
	for i := range txns {
		txns[i] = fmt.Sprintf("$event%d:example.org", i)
	}
	b.ReportAllocs()
	for i := range b.N {
		txn := txns[i%len(txns)]
		m.CommandQueued(txn, now)
		m.CommandDone(txn, "send_message", true)
	}
}

type nopTransport struct{ resp *http.Response }

func (t nopTransport) RoundTrip(*http.Request) (*http.Response, error) { return t.resp, nil }

// BenchmarkTransport is what the wrapper adds to one homeserver request.
func BenchmarkTransport(b *testing.B) {
	base := nopTransport{resp: &http.Response{StatusCode: 200, Body: http.NoBody}}
	req := httptest.NewRequest("PUT", "http://hs/_matrix/client/v3/rooms/!room:example.org/send/m.room.message/dmb_0123456789abcdef", nil)
	for _, wrapped := range []bool{false, true} {
		b.Run(fmt.Sprintf("wrapped=%v", wrapped), func(b *testing.B) {
			var rt http.RoundTripper = base
			if wrapped {
				rt = New().Transport(base)
			}
			b.ReportAllocs()
			for range b.N {
				_, _ = rt.RoundTrip(req)
			}
		})
	}
}

// BenchmarkScrape is one full /metrics request against a database with
// 10,000 portals and ghosts, 1,000 logins, 1,000 pending inbox rows and
// 10,000 handled Matrix events: the queries, the Go and process
// collectors, and the text encoding.
func BenchmarkScrape(b *testing.B) {
	for _, target := range testdb.Targets(b) {
		db := testdb.Open(b, target)
		fill(b, db)
		b.Run(target.Name+"/queries", func(b *testing.B) {
			for range b.N {
				if _, err := db.Stats().Counts(context.Background()); err != nil {
					b.Fatal(err)
				}
				if _, err := db.Stats().LoginStates(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(target.Name, func(b *testing.B) {
			m := New()
			m.WatchState(Sources{DB: db, Connectors: func() []string { return []string{"xmpp"} }, Log: zerolog.Nop()})
			srv := httptest.NewServer(m.Handler())
			defer srv.Close()
			b.ResetTimer()
			for range b.N {
				resp, err := http.Get(srv.URL + "/metrics")
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !strings.Contains(string(body), "dmbridge_portals 10000") {
					b.Fatalf("unexpected scrape:\n%s", body)
				}
				b.SetBytes(int64(len(body)))
			}
		})
	}
}

func fill(b *testing.B, db *database.Database) {
	b.Helper()
	err := db.DoTxn(context.Background(), nil, func(ctx context.Context) error {
		exec := func(q string, args ...any) {
			if _, err := db.Exec(ctx, q, args...); err != nil {
				b.Fatalf("%s: %v", q, err)
			}
		}
		for i := range 1000 {
			exec("INSERT INTO login (id, connector_id, matrix_user, state) VALUES ($1, 'xmpp', $2, 'connected')",
				fmt.Sprintf("login%d", i), fmt.Sprintf("@u%d:example.org", i))
		}
		for i := range 10000 {
			exec("INSERT INTO ghost (id, mxid) VALUES ($1, $2)", fmt.Sprintf("c%d", i), fmt.Sprintf("@dm_c%d:example.org", i))
			exec("INSERT INTO portal (login_id, chat_id, contact_id, created_at) VALUES ($1, $2, $2, 0)",
				fmt.Sprintf("login%d", i%1000), fmt.Sprintf("c%d", i))
			exec("INSERT INTO mx_event (event_id, room_id, data, done) VALUES ($1, '!r:example.org', '{}', true)",
				fmt.Sprintf("$e%d", i))
		}
		for i := range 1000 {
			exec("INSERT INTO inbox (connector_id, seq, login_id, kind, data) VALUES ('xmpp', $1, 'login0', 'message', '{}')", i+1)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
