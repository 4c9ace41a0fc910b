package xmppconnector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/sdk"
)

// Version is reported to the bridge in hello.
const Version = "0.1.0"

// Connector runs every configured account and the SDK client that
// carries their events to the bridge.
type Connector struct {
	cfg      *Config
	store    *Store
	client   *clientGate
	accounts map[string]*account
	order    []*account
	avatars  net.Listener // nil when avatars are off
	log      zerolog.Logger
}

// New opens the database and prepares the accounts; Run connects.
func New(ctx context.Context, cfg *Config, log zerolog.Logger) (*Connector, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	store, err := OpenStore(ctx, cfg.Database)
	if err != nil {
		return nil, err
	}
	if err := store.Prune(ctx); err != nil {
		log.Warn().Err(err).Msg("Could not prune old bookkeeping")
	}
	c := &Connector{cfg: cfg, store: store, accounts: make(map[string]*account), log: log}
	if cfg.Avatars.Listen != "" {
		c.avatars, err = net.Listen("tcp", cfg.Avatars.Listen)
		if err != nil {
			_ = store.Close()
			return nil, fmt.Errorf("avatar endpoint: %w", err)
		}
		if cfg.Avatars.BaseURL == "http://"+cfg.Avatars.Listen {
			// A port of 0 in listen is only known now.
			cfg.Avatars.BaseURL = "http://" + c.avatars.Addr().String()
		}
	}
	c.client = newClientGate()
	for i := range cfg.Accounts {
		ac := &cfg.Accounts[i]
		a := newAccount(ac, &cfg.XMPP, store, c.client, cfg.Avatars.BaseURL, c.updateLogins, log)
		a.files = c.client
		c.accounts[a.login] = a
		c.order = append(c.order, a)
	}
	return c, nil
}

// uploadProbeWait bounds how long the connector waits for the accounts'
// first logins, which tell whether files can be sent, before it dials the
// bridge: a server that hangs must not keep it away from the bridge.
const uploadProbeWait = 10 * time.Second

// newClient makes the SDK client, once the accounts' first logins have
// ended or uploadProbeWait passed: media is announced when an account's
// server offers HTTP File Upload. The hello cannot change later; an
// account whose server turns out to have none answers files with
// M_UNSUPPORTED.
func (c *Connector) newClient(ctx context.Context) *sdk.Client {
	deadline := time.After(uploadProbeWait)
wait:
	for _, a := range c.order {
		select {
		case <-a.tried:
		case <-deadline:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	media := false
	for _, a := range c.order {
		media = media || a.canUpload()
	}
	log := c.log
	client := sdk.NewClient(sdk.ClientOptions{
		URL:    c.cfg.Bridge.URL,
		Token:  c.cfg.Bridge.Token,
		Hello:  c.hello(media),
		Store:  c.store,
		Handle: c.handle,
		Log:    log,
		OnWelcome: func(w connector.Welcome) {
			log.Info().Int64("acked_seq", w.AckedSeq).Str("bridge", w.Bridge.Name+" "+w.Bridge.Version).Msg("Bridge accepted the connector")
		},
		OnError: func(e *connector.Error, _ *connector.Frame) {
			if e.Code == connector.ErrForbidden && e.Login != "" {
				log.Error().Str("login", e.Login).Str("message", e.Message).Msg("Bridge refused a login")
			}
		},
	})
	c.client.set(client)
	c.updateLogins()
	return client
}

func (c *Connector) hello(media bool) connector.Hello {
	return connector.Hello{
		Connector: connector.Software{ID: c.cfg.Bridge.ConnectorID, Name: "XMPP connector", Version: Version},
		Network:   connector.Network{ID: "xmpp", Name: "XMPP"},
		Capabilities: connector.Capabilities{
			Formats:           []string{"plain"},
			Media:             media,
			Edit:              true,
			Delete:            true,
			Reactions:         true,
			Replies:           true,
			ReadReceipts:      true,
			Typing:            true,
			Presence:          true,
			ResolveIdentifier: true,
			Backfill:          true,
			ListChats:         true,
		},
	}
}

// updateLogins keeps the logins of the next hello current.
func (c *Connector) updateLogins() {
	client := c.client.current()
	if client == nil {
		return
	}
	logins := make([]connector.Login, 0, len(c.order))
	for _, a := range c.order {
		logins = append(logins, a.loginInfo())
	}
	client.SetLogins(logins)
}

// handle routes a bridge command to its account.
func (c *Connector) handle(ctx context.Context, op string, cmd *connector.Command) (*connector.Result, error) {
	a := c.accounts[cmd.Login]
	if a == nil {
		return nil, &connector.Error{Code: connector.ErrNotFound, Message: fmt.Sprintf("no account %q in this connector", cmd.Login)}
	}
	return a.command(ctx, op, cmd)
}

// Run connects to the bridge and to XMPP until ctx ends. It returns early
// only if another connector process took over the connector id.
func (c *Connector) Run(ctx context.Context) error {
	// Cancel before waiting: the accounts stop only when ctx ends.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, a := range c.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.run(ctx)
		}()
	}
	if c.avatars != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveAvatars(ctx, c.avatars, avatarHandler{store: c.store, log: c.log}); err != nil {
				c.log.Error().Err(err).Msg("Avatar endpoint stopped")
			}
		}()
	}
	err := c.newClient(ctx).Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Close releases the database; call it after Run returned.
func (c *Connector) Close() error {
	if c.avatars != nil {
		_ = c.avatars.Close()
	}
	return c.store.Close()
}

// Store exposes the database, for tests and tools.
func (c *Connector) Store() *Store { return c.store }
