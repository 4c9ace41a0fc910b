// Package appservice is the bridge's link to the homeserver: the appservice
// registration, durable transaction intake, user queries and intents. It sits
// on top of mautrix-go's appservice package and adds what a bridge that must
// lose nothing needs: transactions stored before they are acknowledged.
package appservice

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/id"
	"maunium.net/go/mautrix/sqlstatestore"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/internal/fence"
)

// DoublePuppetValue marks events the bridge sent as a real user, so that they
// are recognised when the homeserver hands them back.
const DoublePuppetValue = "dmbridge"

// Sink receives what the intake took in.
type Sink interface {
	// Wake tells the sink that new Matrix events are stored.
	Wake()
	// MatrixEphemeral hands over an ephemeral event (typing, receipt, presence);
	// these are not stored, and losing one is acceptable.
	MatrixEphemeral(ctx context.Context, evt *EphemeralEvent)
}

// Link is the bridge's connection to the homeserver.
type Link struct {
	AS         *mas.AppService
	StateStore *StateStore
	cfg        *config.Config
	db         *database.Database
	log        zerolog.Logger
	sink       Sink
	crypto     CryptoSink
	intakeMu   sync.Mutex
	server     *http.Server
	// mounts are routes beside the homeserver's, such as provisioning.
	mounts []mount
	// gate, when set, must pass before a transaction is acknowledged (see
	// SetGate).
	gate func() error
	// GhostQueried, if set, runs when the homeserver asks about a ghost
	// (before a user's invite reaches it), after its registration.
	GhostQueried func(ctx context.Context, userID id.UserID)
	// RegisterGhost, if set, registers a ghost a user query made (see
	// queryHandler.register).
	RegisterGhost func(ctx context.Context, userID id.UserID) error
}

type mount struct {
	pattern string
	handler http.Handler
	// probe: a health or readiness probe, which answers even when the gate
	// shuts (a former active must be able to say it is not ready).
	probe bool
}

// Mount serves h for pattern (a net/http ServeMux pattern) on the appservice
// listener, so that APIs like provisioning need no port of their own. It must
// be called before Start or Handler.
func (l *Link) Mount(pattern string, h http.Handler) {
	l.mounts = append(l.mounts, mount{pattern: pattern, handler: h})
}

// MountProbe is Mount for a health or readiness probe: the gate (SetGate)
// does not silence it.
func (l *Link) MountProbe(pattern string, h http.Handler) {
	l.mounts = append(l.mounts, mount{pattern: pattern, handler: h, probe: true})
}

// New builds the appservice from the config. The state store shares the
// bridge's database so that joined members and registrations survive restarts.
func New(ctx context.Context, cfg *config.Config, db *database.Database, log zerolog.Logger) (*Link, error) {
	reg := &mas.Registration{
		ID:              cfg.Appservice.ID,
		URL:             cfg.Appservice.Address,
		AppToken:        cfg.Appservice.ASToken,
		ServerToken:     cfg.Appservice.HSToken,
		SenderLocalpart: cfg.Appservice.Bot.Username,
		EphemeralEvents: cfg.Appservice.EphemeralEvents,
	}
	as, err := mas.CreateFull(mas.CreateOpts{
		Registration:     reg,
		HomeserverDomain: cfg.Homeserver.Domain,
		HomeserverURL:    cfg.Homeserver.Address,
		HostConfig:       mas.HostConfig{Hostname: cfg.Appservice.Hostname, Port: uint16(cfg.Appservice.Port)},
	})
	if err != nil {
		return nil, fmt.Errorf("create appservice: %w", err)
	}
	as.Log = log.With().Str("component", "appservice").Logger()
	if as.HTTPClient.Transport == nil {
		as.HTTPClient.Transport = homeserverTransport(cfg.Bridge.HomeserverConcurrency)
	}
	// No retries inside a call: the event dispatcher retries failed events
	// itself, for as long as it takes, and gives its concurrency slot back
	// while it waits. mautrix's own retries would wait up to a minute per
	// call while holding the slot, and stop after four.
	as.DefaultHTTPRetries = 0
	as.DoublePuppetValue = DoublePuppetValue
	store := sqlstatestore.NewSQLStateStore(db.Database, db.Log, true)
	if err = store.Upgrade(ctx); err != nil {
		return nil, fmt.Errorf("upgrade state store: %w", err)
	}
	cached := NewStateStore(store)
	as.StateStore = cached
	l := &Link{AS: as, StateStore: cached, cfg: cfg, db: db, log: log}
	as.QueryHandler = newQueryHandler(l)
	return l, nil
}

// SetSink names who receives the events the intake takes in.
func (l *Link) SetSink(s Sink) { l.sink = s }

// SetGate makes every answer on the appservice listener, the probes'
// aside, wait on gate: high availability passes its lease check, so that a
// former active resumed after a pause answers nothing, not a push it stored
// before the pause nor an error (the homeserver sees the connection drop and
// retries at the active, which knows a transaction by its id). Call it
// before Start.
func (l *Link) SetGate(gate func() error) { l.gate = gate }

// Handler routes the homeserver's calls: transactions go to the durable
// intake, everything else to mautrix's router.
func (l *Link) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /_matrix/app/v1/transactions/{txnID}", l.putTransaction)
	for _, m := range l.mounts {
		mux.Handle(m.pattern, m.handler)
	}
	mux.Handle("/", l.AS.Router)
	probes := map[string]bool{}
	for _, m := range l.mounts {
		if m.probe {
			probes[mountPath(m.pattern)] = true
		}
	}
	return fence.Handler(mux, l.gate, func(r *http.Request) bool { return probes[r.URL.Path] })
}

// mountPath is the path of a ServeMux pattern such as "GET /x".
func mountPath(pattern string) string {
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// Start listens for the homeserver. It returns once the listener is bound.
func (l *Link) Start() error {
	addr := l.cfg.Appservice.Hostname + ":" + strconv.Itoa(l.cfg.Appservice.Port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen for the homeserver on %s: %w", addr, err)
	}
	l.server = NewHTTPServer(l.Handler())
	go func() {
		if err := l.server.Serve(ln); err != nil && err != http.ErrServerClosed {
			l.log.Error().Err(err).Msg("Appservice listener failed")
		}
	}()
	l.log.Info().Str("address", addr).Msg("Listening for the homeserver")
	return nil
}

// Stop closes the listener, letting requests in progress finish.
func (l *Link) Stop(ctx context.Context) error {
	if l.server == nil {
		return nil
	}
	return l.server.Shutdown(ctx)
}

// BotMXID is the bridge bot's user id.
func (l *Link) BotMXID() id.UserID { return l.AS.BotMXID() }

// Bot returns the bot's intent.
func (l *Link) Bot() *mas.IntentAPI { return l.AS.BotIntent() }

// homeserverTransport is the transport of every homeserver call. mautrix
// leaves it nil, i.e. http.DefaultTransport, which keeps two idle
// connections per host: with homeserver_concurrency calls in flight (and
// the double puppets, the m.direct writes and the ghost devices' long polls
// beside them), every other call opened a connection and closed it after
// use. A burst of new DMs left thousands of sockets in TIME_WAIT and paid a
// TCP handshake per call.
func homeserverTransport(concurrency int) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(64, 4*concurrency)
	t.MaxIdleConns = 2 * t.MaxIdleConnsPerHost
	return t
}
