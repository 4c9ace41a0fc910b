package bridge_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/testdb"
	"github.com/dmbridge/dmbridge/internal/tesths"
)

// BenchmarkRemoteMessages measures remote→Matrix throughput end to end: from
// the connector's Send to the message in the user's /sync, through the real
// homeserver, on one chat (ordered, so sequential by design) and on 8 chats.
func BenchmarkRemoteMessages(b *testing.B) {
	for _, chats := range []int{1, 8} {
		for _, name := range []string{"sqlite", "postgres"} {
			b.Run(fmt.Sprintf("%s/chats=%d", name, chats), func(b *testing.B) {
				benchRemote(b, name, chats)
			})
		}
	}
}

func benchRemote(b *testing.B, dbName string, chats int) {
	var target testdb.Target
	if dbName == "sqlite" {
		target = testdb.SQLite(b)
	} else {
		target = testdb.Postgres(b)
	}
	s := newStack(b, target)
	f := s.connectFake(nil)
	ctx := context.Background()
	// Portals exist before the clock starts: this measures messages.
	for c := 0; c < chats; c++ {
		f.send(textFrom(fmt.Sprintf("c%d@network", c), "warm", "warm"))
	}
	tesths.WaitFor(b, 30*time.Second, "warm-up portals", func() (bool, error) {
		var n int
		err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM message").Scan(&n)
		return n == chats, err
	})
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	var last int64
	for i := 0; i < b.N; i++ {
		contact := fmt.Sprintf("c%d@network", i%chats)
		seq, err := f.client.Send(ctx, textFrom(contact, fmt.Sprintf("b%d", i), fmt.Sprintf("bench %d", i)))
		if err != nil {
			b.Fatal(err)
		}
		last = seq
	}
	if err := f.client.WaitAcked(ctx, last); err != nil {
		b.Fatal(err)
	}
	tesths.WaitFor(b, 5*time.Minute, "all benchmark messages bridged", func() (bool, error) {
		var n int
		err := s.br.DB.QueryRow(ctx, "SELECT COUNT(*) FROM message").Scan(&n)
		return n == chats+b.N, err
	})
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "alloc-bytes/msg")
}

// BenchmarkConnectorIntake measures how fast the bridge durably accepts
// connector events (Send to ack): the inbox insert and acked_seq move in one
// transaction each. Applying them to Matrix runs behind it.
func BenchmarkConnectorIntake(b *testing.B) {
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			target := testdb.SQLite(b)
			if name == "postgres" {
				target = testdb.Postgres(b)
			}
			s := newStack(b, target)
			f := s.connectFake(nil)
			ctx := context.Background()
			b.ResetTimer()
			var last int64
			for i := 0; i < b.N; i++ {
				// The bridge applies these to Matrix meanwhile, on the same
				// CPUs; the clock only waits for the acks.
				ev := textFrom("bob@network", fmt.Sprintf("i%d", i), "intake")
				seq, err := f.client.Send(ctx, ev)
				if err != nil {
					b.Fatal(err)
				}
				last = seq
			}
			if err := f.client.WaitAcked(ctx, last); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
