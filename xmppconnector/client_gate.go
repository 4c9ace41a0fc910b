package xmppconnector

import (
	"context"
	"io"
	"net/http"
	"sync"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

// clientGate hands the SDK client to the accounts once Run has made it.
// The client's hello is fixed when it is made, and whether it may say
// media: true is only known after the accounts' first logins have looked
// for an upload service; until then the accounts' first events wait here.
type clientGate struct {
	mu     sync.Mutex
	client *sdk.Client
	ready  chan struct{}
}

func newClientGate() *clientGate { return &clientGate{ready: make(chan struct{})} }

func (g *clientGate) set(c *sdk.Client) {
	g.mu.Lock()
	g.client = c
	g.mu.Unlock()
	close(g.ready)
}

// current is the client, nil before set.
func (g *clientGate) current() *sdk.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.client
}

func (g *clientGate) wait(ctx context.Context) (*sdk.Client, error) {
	select {
	case <-g.ready:
		return g.current(), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *clientGate) Send(ctx context.Context, ev *connector.Event) (int64, error) {
	c, err := g.wait(ctx)
	if err != nil {
		return 0, err
	}
	return c.Send(ctx, ev)
}

func (g *clientGate) SendEphemeral(ctx context.Context, e *connector.Ephemeral) error {
	c := g.current()
	if c == nil {
		// Ephemerals may be lost; this early nobody watches them anyway.
		return nil
	}
	return c.SendEphemeral(ctx, e)
}

func (g *clientGate) OpenAttachment(ctx context.Context, hc *http.Client, a *connector.Attachment) (io.ReadCloser, error) {
	c, err := g.wait(ctx)
	if err != nil {
		return nil, err
	}
	return c.OpenAttachment(ctx, hc, a)
}
