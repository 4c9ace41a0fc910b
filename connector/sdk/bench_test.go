package sdk

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// nopStore acks everything and stores nothing, so the benchmark measures the
// protocol path: client store, framing, websocket, validation, acks.
type nopStore struct{ acked atomic.Int64 }

func (s *nopStore) AckedSeq(context.Context, string) (int64, error) { return s.acked.Load(), nil }

func (s *nopStore) Accept(_ context.Context, _ string, seq int64, _ *connector.Event) error {
	s.acked.Store(seq)
	return nil
}

type nopHandler struct{}

func (nopHandler) Hello(context.Context, string, *connector.Hello) []server.LoginRefusal { return nil }
func (nopHandler) Check(context.Context, string, *connector.Event) *connector.Error      { return nil }
func (nopHandler) Ephemeral(context.Context, string, *connector.Ephemeral)               {}
func (nopHandler) Connected(string)                                                      {}
func (nopHandler) Disconnected(string)                                                   {}

// BenchmarkEventThroughput streams message events from a Client to a Server
// over a loopback websocket and reports events per second, end to end
// (Send until the last ack).
func BenchmarkEventThroughput(b *testing.B) {
	h := connectortest.NewHarness(b, func(o *server.Options) {
		o.Store = &nopStore{}
		o.Handler = nopHandler{}
	})
	c := newClient(b, h, "bench", nil)
	runClient(b, c)
	waitConnected(b, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ev := connectortest.Message(1)

	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var last int64
	for range b.N {
		seq, err := c.Send(ctx, ev)
		if err != nil {
			b.Fatal(err)
		}
		last = seq
	}
	if err := c.WaitAcked(ctx, last); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
