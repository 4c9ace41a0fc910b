package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/internal/connectortest"
)

// runClient runs c until the test ends and returns Run's result channel.
func runClient(t testing.TB, c *Client) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- c.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("client did not stop")
		}
	})
	return done
}

func newClient(t testing.TB, h *connectortest.Harness, id string, mutate func(*ClientOptions)) *Client {
	t.Helper()
	opts := ClientOptions{
		URL:        h.URL,
		Token:      connectortest.Token,
		Hello:      *connectortest.Hello(id),
		Log:        connectortest.Log(t),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&opts)
	}
	return NewClient(opts)
}
