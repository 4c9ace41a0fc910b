package xmppconnector

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dmbridge/dmbridge/connector"
)

// eventSink is the part of the SDK client an account uses.
type eventSink interface {
	Send(ctx context.Context, ev *connector.Event) (int64, error)
	SendEphemeral(ctx context.Context, e *connector.Ephemeral) error
}

// account is one XMPP account, bridged as one login. It keeps one stream
// to the server, reconnecting with backoff, and turns what arrives into
// events on a single worker goroutine, so a chat's events keep their order.
// Contact profiles are fetched by a second goroutine (profiles.go), so
// that a slow contact server holds up no chat.
type account struct {
	cfg        *AccountConfig
	xcfg       *XMPPConfig
	login      string // the account's bare JID, also the login id
	store      *Store
	events     eventSink
	avatarBase string // "" when avatars are not served
	onState    func() // the login state changed; the connector updates its hello
	files      attachmentOpener
	// uploadHTTP puts files into upload slots, whose URLs the server
	// chose: it refuses internal addresses (xmpp.upload_allow opens them).
	uploadHTTP *http.Client
	// tried is closed once the first login attempt has ended, so the
	// connector knows by then whether the server takes file uploads.
	tried     chan struct{}
	triedOnce sync.Once
	log       zerolog.Logger

	mu       sync.Mutex
	conn     *xmppConn // nil while disconnected
	state    string    // the login state the bridge was last told
	show     string    // our own presence, kept across reconnects
	status   string
	presence map[string]map[string]string // contact → resource → protocol presence

	qmu   sync.Mutex
	queue []work
	wake  chan struct{}
	// droppable counts the queue's presence and headline items, dropped
	// counts those dropped since the worker last said so (see enqueue).
	droppable, dropped int

	profiles *profileFetches // vCards to fetch, off the worker
	// firstProfileWait is how long a new contact's first message waits
	// for its profile (the constant; tests of a server that never answers
	// shorten it rather than wait out seconds).
	firstProfileWait time.Duration
}

// work is one item for the worker: a stanza, or an archive catch-up (at
// the start of every connection, then every archive_sweep).
type work struct {
	conn    *xmppConn
	msg     *message
	pres    *presence
	catchUp bool
}

func newAccount(cfg *AccountConfig, xcfg *XMPPConfig, store *Store, events eventSink, avatarBase string, onState func(), log zerolog.Logger) *account {
	return &account{
		cfg:        cfg,
		xcfg:       xcfg,
		login:      cfg.JID,
		store:      store,
		events:     events,
		avatarBase: avatarBase,
		onState:    onState,
		log:        log.With().Str("login", cfg.JID).Logger(),
		state:      connector.LoginDisconnected,
		presence:   make(map[string]map[string]string),
		wake:       make(chan struct{}, 1),
		tried:      make(chan struct{}),
		uploadHTTP: newUploadClient(xcfg.UploadAllow, log),
		profiles:   newProfileFetches(),

		firstProfileWait: firstProfileWait,
	}
}

// canUpload reports whether the live connection found an upload service.
func (a *account) canUpload() bool {
	c := a.current()
	return c != nil && c.upload != nil
}

// loginInfo is the account as announced in hello.
func (a *account) loginInfo() connector.Login {
	a.mu.Lock()
	defer a.mu.Unlock()
	return connector.Login{ID: a.login, MatrixUser: a.cfg.MatrixUser, State: a.state}
}

// current returns the live connection, or nil.
func (a *account) current() *xmppConn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

// live is the current connection, for a command that needs one: while the
// stream is down it fails with errOffline, which the bridge retries.
func (a *account) live() (*xmppConn, error) {
	if c := a.current(); c != nil {
		return c, nil
	}
	return nil, errOffline
}

// chatConn is the peer of a command's chat and the connection to reach it.
func (a *account) chatConn(chat *connector.Chat) (string, *xmppConn, error) {
	peer, err := chatPeer(chat)
	if err != nil {
		return "", nil, err
	}
	conn, err := a.live()
	return peer, conn, err
}

// run keeps the account connected until ctx ends.
func (a *account) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.work(ctx)
	}()
	go func() {
		defer wg.Done()
		a.fetchProfiles(ctx)
	}()
	defer wg.Wait()

	wait := newBackoff(a.xcfg.MinBackoff, a.xcfg.MaxBackoff)
	for {
		conn, err := a.connect(ctx)
		a.triedOnce.Do(func() { close(a.tried) })
		if ctx.Err() != nil {
			if conn != nil {
				conn.close()
			}
			return
		}
		if err == nil {
			wait.loggedIn()
			a.setState(ctx, connector.LoginConnected, "")
			go conn.keepAlive(ctx, a.xcfg.PingInterval)
			if !a.serve(ctx, conn) {
				conn.close()
				a.dropConn(conn)
				return
			}
			if wait.ended(conn.err) {
				a.log.Error().Err(conn.err).Msg("XMPP connection ended: the server sent a stanza over xmpp.max_stanza_size; reconnecting later")
				if conn.skippedOversized.Load() {
					// It was an archived message, now behind the cursor.
					wait.skipped()
				}
			} else {
				a.log.Warn().AnErr("reason", conn.err).Msg("XMPP connection ended")
			}
			a.dropConn(conn)
			a.setState(ctx, connector.LoginDisconnected, "connection to the XMPP server lost")
		} else if errors.Is(err, errBadCredentials) {
			a.log.Error().Err(err).Msg("XMPP login refused")
			a.setState(ctx, connector.LoginBadCredentials, "the XMPP server refused the password")
			wait.refused()
		} else {
			a.log.Warn().Err(err).Msg("Could not connect to the XMPP server")
			a.setState(ctx, connector.LoginDisconnected, "cannot reach the XMPP server")
		}
		retryIn := wait.next()
		a.log.Debug().Dur("retry_in", retryIn).Msg("Reconnecting to XMPP later")
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryIn):
		}
	}
}

// sweepRetry is how soon the archive is swept again after a catch-up or a
// message failed to bridge: what failed is still in the archive after the
// cursor, and should not wait a whole archive_sweep for its retry.
const sweepRetry = 30 * time.Second

// serve waits for conn to end (true) or ctx to end (false). Meanwhile it
// sweeps the archive every archive_sweep: a message the server archived
// but never delivered to this client (sent to another of the user's
// resources with carbons <private/> or <no-copy/>, or carbons could not be
// enabled) would otherwise wait for the next reconnect, which may be days.
func (a *account) serve(ctx context.Context, conn *xmppConn) bool {
	sweep := time.NewTimer(a.xcfg.sweepEvery())
	defer sweep.Stop()
	for {
		select {
		case <-conn.done:
			return true
		case <-ctx.Done():
			return false
		case <-sweep.C:
			a.queueCatchUp(conn)
			next := a.xcfg.sweepEvery()
			if !conn.caughtUp.Load() {
				next = min(next, sweepRetry)
			}
			sweep.Reset(next)
		}
	}
}

// queueCatchUp queues an archive catch-up of conn unless one is already
// waiting: a worker busy for longer than a sweep interval must not find a
// pile of them.
func (a *account) queueCatchUp(conn *xmppConn) {
	if conn.catchUpQueued.CompareAndSwap(false, true) {
		a.enqueue(work{conn: conn, catchUp: true})
	}
}

// connect logs in and sets the stream up. The catch-up is queued before
// presence goes out, so the worker pages the archive before it sees any
// live message (offline ones included) of this connection.
func (a *account) connect(ctx context.Context) (*xmppConn, error) {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sess, err := login(dctx, a.xcfg, a.cfg)
	if err != nil {
		return nil, err
	}
	conn := newConn(sess, a.login, a, a.xcfg.MaxStanzaSize, a.log)
	a.log.Info().Str("jid", sess.LocalAddr().String()).Msg("Connected to XMPP")
	if err := conn.request(dctx, enableCarbonsIQ(), nil); err != nil {
		// Without carbons, messages sent from other clients stay invisible
		// until the next catch-up; not a reason to stay offline.
		a.log.Warn().Err(err).Msg("Could not enable message carbons")
	}
	if conn.upload, err = discoverUpload(dctx, conn, sess.LocalAddr().Domain().String()); err != nil {
		// Files then get M_UNSUPPORTED until the next connection.
		a.log.Warn().Err(err).Msg("Could not look for an HTTP upload service")
	} else if conn.upload != nil {
		a.log.Info().Str("service", conn.upload.jid).Int64("max_file_size", conn.upload.maxSize).Msg("Server offers HTTP file upload")
	}
	a.mu.Lock()
	a.conn = conn
	a.mu.Unlock()
	a.queueCatchUp(conn)
	if err := conn.sendInitialPresence(dctx, a.ownPresence(conn), sess.LocalAddr().Domain().String()); err != nil {
		conn.close()
		a.dropConn(conn)
		return nil, err
	}
	return conn, nil
}

func (a *account) dropConn(conn *xmppConn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == conn {
		a.conn = nil
	}
	// Presence is per connection: nobody is known to be online any more.
	a.presence = make(map[string]map[string]string)
}

// setState tells the bridge about a login state change (once per change).
func (a *account) setState(ctx context.Context, state, msg string) {
	a.mu.Lock()
	changed := a.state != state
	a.state = state
	a.mu.Unlock()
	if !changed {
		return
	}
	if a.onState != nil {
		a.onState()
	}
	ev := &connector.Event{Kind: connector.KindLogin, Login: a.login, TS: time.Now().UnixMilli(), State: state, Message: msg}
	if _, err := a.events.Send(ctx, ev); err != nil && ctx.Err() == nil {
		a.log.Error().Err(err).Str("state", state).Msg("Could not queue login state event")
	}
}

// onMessage and onPresence run on the read loop: they only queue.
func (a *account) onMessage(c *xmppConn, m *message)   { a.enqueue(work{conn: c, msg: m}) }
func (a *account) onPresence(c *xmppConn, p *presence) { a.enqueue(work{conn: c, pres: p}) }

// maxQueuedWork is the worker's queue length past which presence and
// headlines are dropped. The queue grows when the worker falls behind (a
// slow bridge store, a long catch-up) and anyone can send presence and
// headlines; messages and catch-ups are never dropped, so they bound the
// queue only by what the server delivers.
const maxQueuedWork = 4096

// droppable reports whether w may be dropped under load: availability
// presence and headlines only tell of a state a later one tells again, and
// the worker acts on no other presence but a subscription request, which
// is asked once and is kept.
func (w work) droppable() bool {
	if w.pres != nil {
		return w.pres.Type != "subscribe"
	}
	return w.msg != nil && w.msg.Type == "headline"
}

// enqueue never blocks: the read loop must keep reading so that the
// worker's own requests (archive pages, the roster) get their answers.
// Past maxQueuedWork, presence and headlines go first (see droppable).
func (a *account) enqueue(w work) {
	a.qmu.Lock()
	if len(a.queue) >= maxQueuedWork {
		if w.droppable() {
			a.dropped++
			a.qmu.Unlock()
			return
		}
		if a.droppable > 0 {
			n := len(a.queue)
			a.queue = slices.DeleteFunc(a.queue, work.droppable)
			a.dropped += n - len(a.queue)
			a.droppable = 0
		}
	}
	a.queue = append(a.queue, w)
	if w.droppable() {
		a.droppable++
	}
	a.qmu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *account) work(ctx context.Context) {
	for {
		a.qmu.Lock()
		batch, dropped := a.queue, a.dropped
		a.queue, a.droppable, a.dropped = nil, 0, 0
		a.qmu.Unlock()
		if dropped > 0 {
			a.log.Warn().Int("dropped", dropped).Msg("Worker fell behind: dropped presence and headline stanzas")
		}
		for _, w := range batch {
			if ctx.Err() != nil {
				return
			}
			a.do(ctx, w)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		}
	}
}

func (a *account) do(ctx context.Context, w work) {
	var err error
	switch {
	case w.catchUp:
		// Cleared before it runs: what reaches the archive while it pages
		// may come after its last page, so a sweep due meanwhile may queue
		// the next one.
		w.conn.catchUpQueued.Store(false)
		if !w.conn.alive() {
			// Its successor queues a catch-up of its own.
			return
		}
		if w.conn.noArchive.Load() {
			a.log.Debug().Msg("The XMPP server has no message archive: not sweeping it")
			return
		}
		err = a.catchUp(ctx, w.conn)
		if noArchive(err) {
			// Every sweep would fail the same way until the server gets
			// an archive, which a reconnect finds out.
			w.conn.noArchive.Store(true)
			w.conn.caughtUp.Store(true)
			a.log.Warn().Err(err).Msg("The XMPP server has no message archive (XEP-0313), so the connector cannot catch up: " +
				"messages that arrived while it was offline reach it only through the server's offline storage, if any, " +
				"and messages the user sent from other clients meanwhile are not bridged. Not asking again on this connection")
			return
		}
		if err == nil {
			w.conn.caughtUp.Store(true)
		}
	case w.msg != nil:
		err = a.handleStanza(ctx, w.conn, w.msg)
	case w.pres != nil:
		// Presence is not in the archive: nothing for a catch-up to retry.
		if err := a.handlePresence(ctx, w.conn, w.pres); err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("Could not handle an XMPP presence")
		}
		return
	}
	if err != nil {
		// What failed is still in the archive after the cursor (only a
		// catch-up moves it, and not past a failure), so the next catch-up
		// brings it back; clearing caughtUp makes that come sooner.
		w.conn.caughtUp.Store(false)
		if ctx.Err() == nil {
			a.log.Error().Err(err).Msg("Could not bridge an XMPP stanza")
		}
	}
}

// noArchive reports whether an archive query failed because the server
// has no archive for the account: it does not know the query at all.
func noArchive(err error) bool {
	var iqErr *iqError
	return errors.As(err, &iqErr) && (iqErr.Condition == "service-unavailable" || iqErr.Condition == "feature-not-implemented")
}

type carbonsIQ struct {
	iqOut
	Enable struct {
		XMLName xml.Name `xml:"urn:xmpp:carbons:2 enable"`
	}
}

func enableCarbonsIQ() carbonsIQ { return carbonsIQ{iqOut: newRequest("set", "")} }

type presenceOut struct {
	XMLName xml.Name `xml:"presence"`
	To      string   `xml:"to,attr,omitempty"`
	Type    string   `xml:"type,attr,omitempty"`
	Show    string   `xml:"show,omitempty"`
	Status  string   `xml:"status,omitempty"`
	Caps    *capsEl
}

// ownPresence is our available presence, with the caps that make the
// server send contacts' profile updates.
func (a *account) ownPresence(c *xmppConn) presenceOut {
	a.mu.Lock()
	defer a.mu.Unlock()
	return presenceOut{Show: a.show, Status: a.status, Caps: c.caps.element()}
}
