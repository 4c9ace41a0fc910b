package xmppconnector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/conformance"
	"github.com/dmbridge/dmbridge/internal/testxmpp"
)

// TestConformance runs the connector conformance suite against the XMPP
// connector, with a real Prosody as its network: bob's messages are the
// events, and bob's inbox shows how often a command really sent one.
func TestConformance(t *testing.T) {
	t.Parallel()
	srv := testxmpp.Start(t)
	srv.Register(t, "alice", alicePW)
	srv.Register(t, "bob", bobPW)
	target := &conformanceTarget{
		t:     t,
		alice: srv.JID("alice"),
		bob:   srv.Dial(t, "bob", bobPW),
		cfg:   aliceConfig(t, srv),
	}
	began := time.Now()
	conformance.RunT(t, target, conformance.Options{})
	t.Logf("conformance suite took %s", time.Since(began).Round(time.Millisecond))
}

// conformanceTarget runs the connector in process; its sqlite database
// outlives Stop, as it would outlive the process.
type conformanceTarget struct {
	t     *testing.T
	alice string
	bob   *testxmpp.Client
	cfg   Config

	mu       sync.Mutex
	cancel   context.CancelFunc
	done     chan error
	conn     *Connector
	produced int
	inbox    []*testxmpp.Message // everything bob has received so far
}

var _ conformance.NetworkObserver = (*conformanceTarget)(nil)

func (c *conformanceTarget) Start(ctx context.Context, url, token string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return errors.New("already running")
	}
	cfg := c.cfg
	cfg.Bridge = BridgeConfig{URL: url, Token: token}
	cfg.Accounts = append([]AccountConfig(nil), c.cfg.Accounts...)
	conn, err := New(ctx, &cfg, testLogger(c.t).With().Str("side", "connector").Logger())
	if err != nil {
		return fmt.Errorf("new connector: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- conn.Run(runCtx) }()
	c.conn, c.cancel, c.done = conn, cancel, done
	return nil
}

func (c *conformanceTarget) Stop(ctx context.Context) error {
	c.mu.Lock()
	conn, cancel, done := c.conn, c.cancel, c.done
	c.conn, c.cancel, c.done = nil, nil, nil
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	cancel()
	select {
	case err := <-done:
		closeErr := conn.Close()
		return errors.Join(err, closeErr)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the connector to stop: %w", ctx.Err())
	}
}

// Produce has bob write to alice; the connector turns each message into
// an event (and may add bob's contact the first time).
func (c *conformanceTarget) Produce(_ context.Context, n int) error {
	c.mu.Lock()
	first := c.produced + 1
	c.produced += n
	c.mu.Unlock()
	for i := first; i < first+n; i++ {
		c.bob.SendChat(c.t, c.alice, fmt.Sprintf("conformance message %d", i), "")
	}
	return nil
}

func (c *conformanceTarget) Login() string { return c.alice }

func (c *conformanceTarget) Chat() *connector.Chat {
	bob := c.bob.Bare()
	return &connector.Chat{ID: bob, Type: connector.ChatTypeDM, With: bob}
}

// Delivered counts bob's messages with this body; the connector sends
// to bob over XMPP, so nothing else can make them appear.
func (c *conformanceTarget) Delivered(_ context.Context, text string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inbox = append(c.inbox, c.bob.Drain()...)
	n := 0
	for _, m := range c.inbox {
		if m.Body == text {
			n++
		}
	}
	return n, nil
}
