package conformance

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

// The SDK target's fake network: one login talking to one contact.
const (
	sdkConnectorID = "conformance-sdk"
	sdkLogin       = "alice@fake.invalid"
	sdkMatrixUser  = "@alice:fake.invalid"
	sdkContact     = "bob@fake.invalid"
)

// SDKTarget is the smallest useful connector built on the SDK: a Client
// whose network is a counter. Produce makes the contact send messages;
// send_message "delivers" by counting. Its MemoryStore outlives Stop, as
// a database would outlive a process, so replay across restarts works.
//
// It is the suite's reference target, and a template for in-process
// targets of real connectors.
type SDKTarget struct {
	// Log receives the SDK's log; the zero value discards it.
	Log zerolog.Logger

	store *sdk.MemoryStore

	mu        sync.Mutex
	client    *sdk.Client
	runCtx    context.Context // ends with Stop
	cancel    context.CancelFunc
	done      chan struct{}
	producers sync.WaitGroup
	produced  int
	delivered map[string]int // text → times sent to the network
	sends     int
}

var _ NetworkObserver = (*SDKTarget)(nil)

// NewSDKTarget returns a stopped target with an empty store.
func NewSDKTarget() *SDKTarget {
	return &SDKTarget{store: sdk.NewMemoryStore(), delivered: make(map[string]int)}
}

func (t *SDKTarget) Start(ctx context.Context, url, token string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil {
		return errors.New("sdk target: already running")
	}
	t.client = sdk.NewClient(sdk.ClientOptions{
		URL:   url,
		Token: token,
		Hello: connector.Hello{
			Connector:    connector.Software{ID: sdkConnectorID, Name: "SDK conformance target", Version: suiteVersion},
			Network:      connector.Network{ID: "fake", Name: "Fake network"},
			Capabilities: connector.Capabilities{Formats: []string{"plain"}},
			Logins:       []connector.Login{{ID: sdkLogin, MatrixUser: sdkMatrixUser, Name: "Alice", State: connector.LoginConnected}},
		},
		Store:  t.store,
		Handle: t.handle,
		Log:    t.Log,
		// The suite drops connections on purpose; waiting the default
		// half second each time would only slow it down.
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
	})
	// The connector outlives the call that starts it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.runCtx, t.cancel, t.done = runCtx, cancel, make(chan struct{})
	go func(c *sdk.Client, done chan struct{}) {
		defer close(done)
		_ = c.Run(runCtx)
	}(t.client, t.done)
	return nil
}

func (t *SDKTarget) Stop(ctx context.Context) error {
	t.mu.Lock()
	cancel, done := t.cancel, t.done
	t.client, t.runCtx, t.cancel, t.done = nil, nil, nil, nil
	t.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	t.producers.Wait()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sdk target: waiting for the client to stop: %w", ctx.Err())
	}
}

// Produce sends n messages from the contact on a goroutine of their own:
// Send blocks while the in-flight window is full.
func (t *SDKTarget) Produce(_ context.Context, n int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == nil {
		return errors.New("sdk target: not running")
	}
	first := t.produced + 1
	t.produced += n
	c, runCtx := t.client, t.runCtx
	t.producers.Add(1)
	go func() {
		defer t.producers.Done()
		for i := first; i < first+n; i++ {
			ev := &connector.Event{
				Kind:   connector.KindMessage,
				Login:  sdkLogin,
				TS:     time.Now().UnixMilli(),
				Chat:   &connector.Chat{ID: sdkContact, Type: connector.ChatTypeDM, With: sdkContact},
				Sender: &connector.Sender{ID: sdkContact},
				ID:     fmt.Sprintf("in-%d", i),
				Text:   fmt.Sprintf("fake message %d", i),
			}
			if _, err := c.Send(runCtx, ev); err != nil {
				return // stopped
			}
		}
	}()
	return nil
}

func (t *SDKTarget) Login() string { return sdkLogin }

func (t *SDKTarget) Chat() *connector.Chat {
	return &connector.Chat{ID: sdkContact, Type: connector.ChatTypeDM, With: sdkContact}
}

func (t *SDKTarget) Delivered(_ context.Context, text string) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.delivered[text], nil
}

// handle is the fake network's side of commands: only send_message works.
func (t *SDKTarget) handle(_ context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
	if cmd.Login != sdkLogin {
		return nil, &connector.Error{Code: connector.ErrNotFound, Message: fmt.Sprintf("no login %q", cmd.Login)}
	}
	if op != connector.OpSendMessage {
		return nil, &connector.Error{Code: connector.ErrUnsupported, Message: fmt.Sprintf("op %q is not supported", op)}
	}
	if cmd.Chat == nil || cmd.Chat.ID != sdkContact {
		return nil, &connector.Error{Code: connector.ErrBadFrame, Message: "send_message: chat is missing or unknown"}
	}
	if cmd.Text == "" {
		return nil, &connector.Error{Code: connector.ErrBadFrame, Message: "send_message: text is required"}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sends++
	t.delivered[cmd.Text]++
	return &connector.Result{ID: fmt.Sprintf("out-%d", t.sends), TS: time.Now().UnixMilli()}, nil
}
