// Package bridge assembles the bridge: database, homeserver link, portals and
// the connector listener, and starts and stops them in order.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/bot"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/dpsync"
	"github.com/dmbridge/dmbridge/e2ee"
	"github.com/dmbridge/dmbridge/ha"
	"github.com/dmbridge/dmbridge/health"
	"github.com/dmbridge/dmbridge/inbox"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/metrics"
	"github.com/dmbridge/dmbridge/portal"
	"github.com/dmbridge/dmbridge/provisioning"
)

// Version is the bridge's version, set at build time with -ldflags.
var Version = "0.1.0"

// Bridge is one running bridge.
type Bridge struct {
	cfg     *config.Config
	log     zerolog.Logger
	DB      *database.Database
	Link    *appservice.Link
	Portals *portal.Manager
	Conn    *server.Server
	// Metrics is this instance's registry and instruments; they are kept
	// even when metrics.listen is off, because health reads the homeserver's
	// last successful call from them.
	Metrics *metrics.Metrics
	// Health answers /_dmbridge/health and /_dmbridge/ready; more readiness
	// conditions can be added with AddReadyCheck.
	Health *health.Checker
	// E2EE is end-to-bridge encryption; nil when encryption.allow is off.
	E2EE *e2ee.Manager
	// DPSync follows double puppets' /sync (double_puppet.sync); nil when
	// that is off.
	DPSync *dpsync.Manager

	connServer *http.Server
	connAddr   net.Addr
	metricsSrv *metrics.Server
}

// New opens the database (running migrations) and wires the parts together.
func New(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*Bridge, error) {
	return build(ctx, cfg, log, nil)
}

// build is New, fenced by lease when it is not nil (see NewActive).
func build(ctx context.Context, cfg *config.Config, log zerolog.Logger, lease *ha.Elector) (*Bridge, error) {
	// Load has compiled them for a config from a file; one made in code
	// would compile them again for every ghost id.
	cfg.CompileTemplates()
	db, err := openDB(ctx, cfg, log, lease)
	if err != nil {
		return nil, err
	}
	if cfg.Database.MaxOpenConns > 0 {
		db.RawDB.SetMaxOpenConns(cfg.Database.MaxOpenConns)
	}
	if cfg.Database.MaxIdleConns > 0 {
		db.RawDB.SetMaxIdleConns(cfg.Database.MaxIdleConns)
	}
	link, err := appservice.New(ctx, cfg, db, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	mx := metrics.New()
	// Every intent's client and the double puppets share this client, so
	// wrapping its transport sees every homeserver request.
	link.AS.HTTPClient.Transport = mx.Transport(fenceTransport(link.AS.HTTPClient.Transport, leaseGate(lease)))
	matrix.BoundInTransport(link.AS.HTTPClient)
	// Everything portal/, puppet/ and bot/ do on Matrix goes through intents.
	intents := matrix.NewIntents(link.AS)
	link.RegisterGhost = intents.RegisterGhost
	portals := portal.NewManager(cfg, db, link, intents, log)
	if lease != nil {
		portals.SetFormerDone(lease.FormerDone())
		link.SetGate(lease.Check)
	}
	portals.SetMetrics(mx)
	events := inbox.New(db, mx, log)
	portals.SetInbox(events)
	srv, err := server.New(server.Options{
		Token:           cfg.Connector.Token,
		ConnectorTokens: cfg.ConnectorTokens(),
		MaxFrameBytes:   cfg.Connector.MaxFrameBytes,
		MaxInFlight:     cfg.Connector.MaxInFlight,
		CommandTimeout:  cfg.Connector.CommandTimeout.D(),
		Bridge:          connector.Software{Name: "dmbridge", Version: Version},
		Store:           events,
		Handler:         observedHandler{Manager: portals, metrics: mx},
		Media:           portals.MediaHandler(),
		Log:             log, // the server names its component itself
		Gate:            leaseGate(lease),
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("create connector server: %w", err)
	}
	enc, err := setupEncryption(ctx, cfg, db, link, intents, portals, log)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if enc != nil {
		mx.WatchE2EE(enc.RenewFailures)
	}
	portals.SetConnector(srv)
	portals.SetRoomHandler(bot.New(cfg, db, link, intents.Bot(), portals, srv, log))
	link.Mount(provisioning.Prefix, provisioning.New(cfg, portals, log))
	mx.WatchState(metrics.Sources{DB: db, Connectors: srv.ConnectorIDs, Log: log.With().Str("component", "metrics").Logger()})
	checker := health.New(db, mx, srv.ConnectorIDs, Version, log)
	link.MountProbe("GET "+health.HealthPath, checker.HealthHandler())
	link.MountProbe("GET "+health.ReadyPath, checker.ReadyHandler())
	watchLease(lease, checker, mx)
	var follow *dpsync.Manager
	if cfg.DoublePuppet.Sync {
		follow = dpsync.New(db, portals.DoublePuppets(), link, log)
		portals.DoublePuppets().SetVerifiedHook(follow.Follow)
		mx.WatchDoublePuppetSync(follow.Counts)
	}
	return &Bridge{cfg: cfg, log: log, DB: db, Link: link, Portals: portals, Conn: srv, Metrics: mx, Health: checker, E2EE: enc,
		DPSync: follow}, nil
}

// setupEncryption gives each ghost in an encrypted room a device (package
// e2ee), when encryption.allow is on and there is a pickle key.
func setupEncryption(ctx context.Context, cfg *config.Config, db *database.Database, link *appservice.Link, intents matrix.Intents,
	portals *portal.Manager, log zerolog.Logger) (*e2ee.Manager, error) {
	if !cfg.Encryption.Allow {
		return nil, nil
	}
	if cfg.Encryption.PickleKey == "" {
		log.Warn().Msg("encryption.allow is on but encryption.pickle_key is empty (run -g, or set it to a long random string): " +
			"encrypted rooms are not served")
		return nil, nil
	}
	enc, err := e2ee.New(ctx, e2ee.Options{
		Config: cfg, DB: db, AS: link.AS, State: link.StateStore, Log: log, RegisterGhost: intents.RegisterGhost,
		IsBridgeUser: func(u id.UserID) bool {
			_, ghost := cfg.ParseGhostUserID(u)
			return ghost || u == link.BotMXID()
		},
	})
	if err != nil {
		return nil, err
	}
	portals.SetEncryption(enc)
	if cfg.Encryption.Appservice {
		// The homeserver pushes the ghosts' to-device messages, device lists
		// and key counts (MSC2409/MSC3202); no ghost device runs /sync.
		link.SetCryptoSink(enc)
		log.Info().Msg("End-to-bridge encryption takes its keys from the homeserver's pushes (encryption.appservice); no /sync loops")
	}
	link.GhostQueried = func(ctx context.Context, u id.UserID) {
		// Made on the homeserver but not kept in memory, and no /sync
		// loop: the ghost is in no encrypted room yet, and may never be.
		if err := enc.Provide(ctx, u); err != nil {
			log.Err(err).Stringer("user_id", u).Msg("Failed to give a queried ghost its device")
		}
	}
	return enc, nil
}

// Start listens for the homeserver and for connectors, makes sure the bot
// exists, and starts applying stored work.
func (b *Bridge) Start(ctx context.Context) error {
	if listen := b.cfg.Metrics.Listen; listen != "" {
		srv, err := b.Metrics.Listen(listen, b.log.With().Str("component", "metrics").Logger())
		if err != nil {
			return err
		}
		b.metricsSrv = srv
	}
	if err := b.Link.Start(); err != nil {
		return err
	}
	// Connectors are taken in before the homeserver is known to be up:
	// their events are stored and wait for it, as the operations guide and
	// the readiness probe promise (a ready instance takes connectors).
	ln, err := net.Listen("tcp", b.cfg.Connector.Listen)
	if err != nil {
		return fmt.Errorf("listen for connectors on %s: %w", b.cfg.Connector.Listen, err)
	}
	b.connAddr = ln.Addr()
	b.connServer = appservice.NewHTTPServer(b.Conn)
	go func() {
		if err := b.connServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error().Err(err).Msg("Connector listener failed")
		}
	}()
	if err := b.ensureBot(ctx); err != nil {
		return err
	}
	if b.E2EE != nil {
		if err := b.E2EE.Start(ctx); err != nil {
			return err
		}
	}
	b.Portals.Start()
	if b.DPSync != nil {
		b.DPSync.Start(ctx)
	}
	b.log.Info().Str("connector_listen", ln.Addr().String()).Msg("Bridge started")
	return nil
}

// MetricsAddr is where the metrics listener is bound, or nil when it is off.
func (b *Bridge) MetricsAddr() net.Addr {
	if b.metricsSrv == nil {
		return nil
	}
	return b.metricsSrv.Addr()
}

// ConnectorAddr is where the connector listener is bound (useful with port 0).
func (b *Bridge) ConnectorAddr() net.Addr { return b.connAddr }

// botWaitMax caps the pause between attempts to reach the homeserver at
// start-up, which doubles from a second.
const botWaitMax = 10 * time.Second

// ensureBot registers the bot and sets its displayname. A homeserver that
// does not answer yet (still starting, restarting, unreachable, 5xx, 429) is
// waited for as long as it takes: the bridge may well start first, and the
// connectors' events wait in the database meanwhile. One that answers and
// refuses the appservice (a 4xx: usually registration.yaml not loaded, or a
// different as_token) will not change its mind, so that ends the start.
func (b *Bridge) ensureBot(ctx context.Context) error {
	bot := b.Link.Bot()
	var err error
	for wait, since := time.Second, time.Now(); ; wait = min(2*wait, botWaitMax) {
		if err = bot.EnsureRegistered(ctx); err == nil {
			break
		}
		if matrix.IsRefusal(err) {
			return fmt.Errorf("the homeserver at %s refuses the appservice (is the registration file in its app_service_api config, with this config's as_token and hs_token?): register bridge bot: %w",
				b.cfg.Homeserver.Address, err)
		}
		b.log.Warn().Err(err).Dur("waited", time.Since(since).Round(time.Second)).Dur("next_try_in", wait).
			Msg("Waiting for the homeserver; connector events are stored meanwhile")
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The displayname is cosmetic: a homeserver that is down now must not
	// keep the bridge from starting and working through its stored events,
	// which wait for the homeserver anyway.
	profile, err := bot.GetOwnDisplayName(ctx)
	if err == nil && profile.DisplayName == b.cfg.Appservice.Bot.Displayname {
		return nil
	}
	if err = bot.SetDisplayName(ctx, b.cfg.Appservice.Bot.Displayname); err != nil {
		b.log.Warn().Err(err).Msg("Could not set the bot's displayname, going on without")
	}
	return nil
}

// Stop closes the listeners, lets running work finish within ctx, and closes
// the database. Unfinished work stays stored for the next start.
func (b *Bridge) Stop(ctx context.Context) error {
	var errs []error
	if b.connServer != nil {
		b.Conn.Close()
		errs = append(errs, b.connServer.Shutdown(ctx))
	}
	errs = append(errs, b.Link.Stop(ctx))
	if b.DPSync != nil {
		b.DPSync.Stop()
	}
	b.Portals.Stop(ctx)
	if b.E2EE != nil {
		b.E2EE.Stop()
	}
	errs = append(errs, b.metricsSrv.Stop(ctx))
	errs = append(errs, b.DB.Close())
	return errors.Join(errs...)
}
