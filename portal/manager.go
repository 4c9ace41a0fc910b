// Package portal turns chats on the network into Matrix DM rooms and carries
// events both ways: connector events into the rooms, the user's Matrix events
// into connector commands.
package portal

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
	"github.com/dmbridge/dmbridge/e2ee"
	"github.com/dmbridge/dmbridge/inbox"
	"github.com/dmbridge/dmbridge/internal/keyedmutex"
	"github.com/dmbridge/dmbridge/matrix"
	"github.com/dmbridge/dmbridge/metrics"
	"github.com/dmbridge/dmbridge/netguard"
	"github.com/dmbridge/dmbridge/puppet"
)

// Connector is what the portals need of the connector server.
type Connector interface {
	Command(ctx context.Context, connectorID, op string, cmd *connector.Command) (*connector.Result, error)
	Connected(connectorID string) bool
	Hello(connectorID string) (*connector.Hello, bool)
}

// maxQueued bounds how many stored events are loaded into memory at once;
// the rest wait in the database.
const maxQueued = 4096

// Manager owns the portals and the flow of events through them.
type Manager struct {
	cfg  *config.Config
	db   *database.Database
	link *appservice.Link
	// mx acts on Matrix as the bot, the ghosts and the double puppets.
	mx     matrix.Intents
	ghosts *puppet.Ghosts
	// e2ee is end-to-bridge encryption, nil when off (portal/encryption.go).
	e2ee   *e2ee.Manager
	dps    *puppet.DoublePuppets
	direct *puppet.Direct
	conn   Connector
	log    zerolog.Logger
	// metrics counts what the portals finish; nil records nothing.
	metrics *metrics.Metrics
	// mediaHTTP fetches attachments from connector URLs; see media.go.
	mediaHTTP *http.Client
	// chats and rooms: see chatlocks.go and membership.go.
	chats chatLocks
	// loginEnds: see loginend.go.
	loginEnds keyedmutex.Mutex[string]
	rooms     RoomHandler

	ctx    context.Context
	cancel context.CancelFunc
	lanes  *lanes
	wg     sync.WaitGroup

	// inbox holds the connector events; see dispatch.go.
	inbox      *inbox.Inbox
	matrixWake chan struct{}
	gates      dispatchGates
	// userTyping is the typing state last sent to the network per room.
	userTyping sync.Map
	// loginOwners caches loginOwner by login id for Check.
	loginOwners sync.Map
	// contested: see loginuse.go.
	contested contestedLogins
	// watch: see loginwatch.go.
	watch *loginWatch
	// retryFirst is the first wait of backoff (firstRetry) and flushRetry
	// flushLater's (flushRetryAfter); tests of a retry shorten them
	// (unit.shortRetries) instead of waiting out seconds.
	retryFirst, flushRetry time.Duration
	stats                  bridgeStats
	// earlyRedactions: see early_redaction.go.
	earlyRedactions atomic.Int64
	// ending holds the rooms whose portals are being cleaned up (see
	// failQueued).
	ending sync.Map
	// bootSeq is the highest mx_event seq when the portals started: an
	// event up to it may have had its command written to the connector by
	// an earlier process (or a former active) that did not live to store
	// the result (see mayHaveWritten).
	bootSeq int64
	// started is when this process started: no request of an earlier one
	// is running after it (see indoubt.go).
	started time.Time
	// formerDone, with high availability, is when the former active's
	// requests had arrived at the latest (see SetFormerDone).
	formerDone time.Time
	// ephemeral bounds remote typing and presence; see ephemeral_bound.go.
	ephemeral ephemeralGate
	// commits batches the per-message writes of different chats; nil
	// before Start (see groupcommit.go).
	commits *groupCommit
	// quiet are the rooms known to have no stored command (see sendDirect).
	quiet quietRooms
	// running is closed by Start. A connector may connect before that (the
	// bridge takes in its events while it waits for the homeserver), and
	// what its connection starts waits for it (see Connected).
	running chan struct{}
}

// NewManager wires the portal manager. Everything it does on Matrix goes
// through mx. SetConnector must be called before Start.
func NewManager(cfg *config.Config, db *database.Database, link *appservice.Link, mx matrix.Intents, log zerolog.Logger) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	// Attachment and avatar URLs come from the network: both clients refuse
	// internal addresses unless bridge.media_fetch_allow opens them.
	// Validate has checked every entry, so NewPolicy cannot fail here; if it
	// somehow did, the empty policy (refuse every internal address) is used.
	guard, err := netguard.NewPolicy(cfg.Bridge.MediaFetchAllow)
	if err != nil {
		log.Err(err).Msg("Invalid bridge.media_fetch_allow, refusing every internal address")
		guard = &netguard.Policy{}
	}
	httpClient := guard.NewClient(guard.NewTransport(&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}))
	httpClient.Timeout = 2 * time.Minute
	m := &Manager{
		cfg:        cfg,
		db:         db,
		link:       link,
		mx:         mx,
		ghosts:     puppet.NewGhosts(mx, db, cfg, httpClient, log),
		dps:        puppet.NewDoublePuppets(mx, db, cfg, log),
		direct:     puppet.NewDirect(log),
		mediaHTTP:  newMediaHTTPClient(guard),
		log:        log.With().Str("component", "portals").Logger(),
		ctx:        ctx,
		cancel:     cancel,
		matrixWake: make(chan struct{}, 1),
		running:    make(chan struct{}),
		started:    time.Now(),
		watch:      newLoginWatch(),
		retryFirst: firstRetry,
		flushRetry: flushRetryAfter,
	}
	m.lanes = newLanes(ctx, cfg.Bridge.HomeserverConcurrency, m.log)
	m.lanes.onIdle = m.wakeThrottled
	link.SetSink(m)
	return m
}

// SetFormerDone tells the manager of an instance elected by high
// availability when the former active's requests had arrived at the latest
// (ha.Elector.FormerDone), so that sends the former left in doubt are
// resolved from then rather than from this process's start. Call it before
// Start.
func (m *Manager) SetFormerDone(t time.Time) { m.formerDone = t }

// SetConnector gives the manager the connector server to send commands to.
func (m *Manager) SetConnector(c Connector) { m.conn = c }

// SetInbox gives the manager the connector events to apply. It must be
// called before Start.
func (m *Manager) SetInbox(in *inbox.Inbox) { m.inbox = in }

// DoublePuppets is the manager's double puppets, for whoever follows them
// (dpsync).
func (m *Manager) DoublePuppets() *puppet.DoublePuppets { return m.dps }

// SetMetrics gives the manager the instance's metrics. It must be called
// before Start.
func (m *Manager) SetMetrics(mx *metrics.Metrics) { m.metrics = mx }

// Start runs the dispatchers; stored work from before a restart is picked up.
func (m *Manager) Start() {
	m.countEarlyRedactions(m.ctx)
	m.setBootSeq(m.ctx)
	m.commits = newGroupCommit(m.db)
	m.commits.start(m.ctx, &m.wg)
	m.wg.Add(5)
	go m.remoteLoop()
	go m.matrixLoop()
	go m.housekeepingLoop()
	go m.loginAlertLoop()
	go m.summaryLoop()
	m.wakeAll()
	m.resumeCommands("")
	m.startDirectRepair()
	close(m.running)
}

// untilRunning waits for Start; false if the manager stopped first.
func (m *Manager) untilRunning() bool {
	select {
	case <-m.running:
		return true
	case <-m.ctx.Done():
		return false
	}
}

// Stop lets running jobs finish within ctx, then stops everything. Work not
// yet done stays in the database.
func (m *Manager) Stop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		m.lanes.stop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		m.log.Warn().Msg("Jobs still running at shutdown deadline, cancelling them")
	}
	m.cancel()
	<-done
	m.wg.Wait()
}

// Wake tells the Matrix-side dispatcher that events were stored.
func (m *Manager) Wake() { signal(m.matrixWake) }

func (m *Manager) wakeAll() {
	m.inbox.Wake()
	signal(m.matrixWake)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
