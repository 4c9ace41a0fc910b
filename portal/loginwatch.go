package portal

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// lastEventWriteEvery bounds how often a login's last event time is written
// to the database: the exact time lives in memory, the stored one only has
// to survive a restart roughly.
const lastEventWriteEvery = 10 * time.Second

// Trouble a user is told about, as stored in login.alerted.
const (
	troubleBadCredentials = connector.LoginBadCredentials
	troubleDisconnected   = connector.LoginDisconnected
)

// LoginStatus is a login as its user should see it: the state that counts
// (a login whose connector is not connected is disconnected, whatever it
// last reported), since when, and when its last event arrived.
type LoginStatus struct {
	State string
	// Since is when the login entered State; zero when unknown.
	Since time.Time
	// ConnectorOffline is true when the bridge has no connection to the
	// login's connector.
	ConnectorOffline bool
	// NotHeld is true when the connector is connected but its hello does
	// not name the login for its owner: the connector no longer holds it
	// (removed, or now run for another user), so nothing flows.
	NotHeld bool
	// LastEvent is zero when no event of the login arrived yet.
	LastEvent time.Time
}

// loginWatch holds what the alerts need in memory: exact last event times,
// since when each connector is offline and each login missing from its
// connector's hello (neither is stored), and the owners each connector's
// current hello names.
type loginWatch struct {
	mu           sync.Mutex
	lastEvent    map[string]time.Time
	lastWritten  map[string]time.Time
	offlineSince map[string]time.Time
	notHeldSince map[string]time.Time
	helloOwners  map[string]helloOwners
	// undelivered: see noteUndelivered.
	undelivered map[string]string
	wake        chan struct{}
}

// helloOwners is the owner a connector's hello names for each login, kept
// per hello (a new connection has a new one) so that the alert loop's pass
// over every login does not scan the hello for each.
type helloOwners struct {
	hello  *connector.Hello
	owners map[string]id.UserID
}

func newLoginWatch() *loginWatch {
	return &loginWatch{
		lastEvent: map[string]time.Time{}, lastWritten: map[string]time.Time{},
		offlineSince: map[string]time.Time{}, notHeldSince: map[string]time.Time{},
		helloOwners: map[string]helloOwners{}, undelivered: map[string]string{}, wake: make(chan struct{}, 1),
	}
}

// noteLoginEvent records that an event of the login arrived. The database
// gets it at most every lastEventWriteEvery per login.
func (m *Manager) noteLoginEvent(ctx context.Context, loginID string) {
	now := time.Now()
	w := m.watch
	w.mu.Lock()
	w.lastEvent[loginID] = now
	write := now.Sub(w.lastWritten[loginID]) >= lastEventWriteEvery
	if write {
		w.lastWritten[loginID] = now
	}
	w.mu.Unlock()
	if write {
		if err := m.db.Login.SetLastEvent(ctx, loginID, now); err != nil {
			m.log.Debug().Err(err).Str("login_id", loginID).Msg("Failed to store the time of the login's last event")
		}
	}
}

// LoginStatus reports a login's status for the bot's ping and the alerts.
func (m *Manager) LoginStatus(l *database.Login) LoginStatus {
	return m.loginStatus(l, time.Now())
}

func (m *Manager) loginStatus(l *database.Login, now time.Time) LoginStatus {
	w := m.watch
	st := LoginStatus{State: l.State, Since: l.StateSince, LastEvent: l.LastEvent}
	if st.State == "" {
		st.State = "unknown"
	}
	var hello *connector.Hello
	online := m.conn != nil && m.conn.Connected(l.ConnectorID)
	if online {
		hello, _ = m.conn.Hello(l.ConnectorID)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if t := w.lastEvent[l.ID]; t.After(st.LastEvent) {
		st.LastEvent = t
	}
	// A connector that is connected but whose hello does not name the
	// login for its owner holds it no more: the login showed as connected
	// forever (its last stored state), while nothing could reach its
	// portals. It is disconnected like a login whose connector is away,
	// since the bridge first saw it missing.
	notHeld := online && hello != nil && !w.names(l.ConnectorID, hello, l.ID, l.MatrixUser)
	if online {
		delete(w.offlineSince, l.ConnectorID)
	}
	if !notHeld {
		delete(w.notHeldSince, l.ID)
	}
	var missing map[string]time.Time
	var key string
	switch {
	case !online:
		missing, key = w.offlineSince, l.ConnectorID
		st.ConnectorOffline = true
	case notHeld:
		missing, key = w.notHeldSince, l.ID
		st.NotHeld = true
	}
	if missing != nil {
		since, ok := missing[key]
		if !ok {
			since = now
			missing[key] = since
		}
		if l.State != connector.LoginBadCredentials {
			// Missing since the connector went away (or stopped naming
			// the login), or since the login itself reported being
			// disconnected, whichever came first.
			if l.State != connector.LoginDisconnected || st.Since.IsZero() || since.Before(st.Since) {
				st.Since = since
			}
			st.State = connector.LoginDisconnected
		}
	}
	if st.Since.IsZero() && st.State == connector.LoginDisconnected {
		// Stored before state times were kept: count from this process.
		st.Since = m.started
	}
	return st
}

// names reports whether hello, the connector's current one, names the
// login for user. The caller holds w.mu.
func (w *loginWatch) names(connectorID string, hello *connector.Hello, loginID string, user id.UserID) bool {
	cached, ok := w.helloOwners[connectorID]
	if !ok || cached.hello != hello {
		cached = helloOwners{hello: hello, owners: make(map[string]id.UserID, len(hello.Logins))}
		for _, hl := range hello.Logins {
			cached.owners[hl.ID] = id.UserID(hl.MatrixUser)
		}
		w.helloOwners[connectorID] = cached
	}
	owner, named := cached.owners[loginID]
	return named && owner == user
}

// loginAlertLoop tells users about logins in trouble. It looks a few times
// per login_alert_after, and at once when a login's state changes.
func (m *Manager) loginAlertLoop() {
	defer m.wg.Done()
	after := m.cfg.Bridge.LoginAlertAfter.D()
	interval := 30 * time.Second
	if after > 0 && after/4 < interval {
		interval = max(after/4, 100*time.Millisecond)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		m.checkLogins(m.ctx)
		select {
		case <-ticker.C:
		case <-m.watch.wake:
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *Manager) checkLogins(ctx context.Context) {
	logins, err := m.db.Login.All(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("Failed to list logins for the login alerts")
		}
		return
	}
	now := time.Now()
	after := m.cfg.Bridge.LoginAlertAfter.D()
	for _, l := range logins {
		if ctx.Err() != nil {
			// Stopping: the alert under way finishes (alertLogin), no
			// other starts; the next process looks again.
			return
		}
		st := m.loginStatus(l, now)
		trouble := ""
		switch {
		case st.State == connector.LoginBadCredentials:
			trouble = troubleBadCredentials
		case st.State == connector.LoginDisconnected && after > 0 && now.Sub(st.Since) >= after:
			trouble = troubleDisconnected
		}
		switch {
		case trouble != "" && trouble != l.Alerted:
			m.alertLogin(ctx, l, trouble, st)
		case trouble == "" && l.Alerted != "" && st.State == connector.LoginConnected:
			m.alertLogin(ctx, l, "", st)
		}
	}
}

// alertLogin tells the login's user, in their management room, about trouble
// ("" = it is over), and records it so each episode is told once. The
// transaction id is derived from the episode, so a retry after a crash
// between the send and the record says it once.
func (m *Manager) alertLogin(ctx context.Context, l *database.Login, trouble string, st LoginStatus) {
	// An alert under way is finished, sent and recorded, even when the
	// bridge is stopping (Stop waits for this loop): Dendrite shows an event
	// whose request was cancelled midway, yet does not remember its
	// transaction id, so the next process's send of the same alert would
	// show it a second time.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), alertTimeout)
	defer cancel()
	log := m.log.With().Str("login_id", l.ID).Str("state", st.State).Str("alert", trouble).Logger()
	user, err := m.db.User.Get(ctx, l.MatrixUser)
	if err != nil {
		log.Warn().Err(err).Msg("Failed to look up the user's management room")
		return
	}
	// A login missing from its connector's hello is timed in memory the
	// same way as a connector outage, and stored the same way.
	if trouble == troubleDisconnected && (st.ConnectorOffline || st.NotHeld) &&
		(l.State != connector.LoginDisconnected || l.StateSince.UnixMilli() != st.Since.UnixMilli()) {
		// The start of a connector outage is known only to this process,
		// and it names the alert's transaction. Store it before the send:
		// a restart between the send and SetAlerted below then derives the
		// same transaction id, and the homeserver shows the alert once.
		if err = m.db.Login.SetStateSince(ctx, l.ID, connector.LoginDisconnected, st.Since); err != nil {
			log.Warn().Err(err).Msg("Failed to store the start of the connector outage, trying again later")
			return
		}
	}
	if user == nil || user.ManagementRoom == "" {
		// Not recorded: the loop looks again, and once the user has a
		// management room they are told what is still the case then
		// (recording it here told them never). Logged once per trouble.
		ev := log.Debug()
		if m.watch.noteUndelivered(l.ID, trouble) {
			ev = log.Warn()
		}
		ev.Time("since", st.Since).Msg("User has no management room, the login alert waits for one")
		return
	}
	if trouble != "" {
		log.Warn().Time("since", st.Since).Bool("connector_offline", st.ConnectorOffline).Msg("Login is in trouble, telling its user")
	} else {
		log.Info().Msg("Login recovered, telling its user")
	}
	content := &event.MessageEventContent{MsgType: event.MsgNotice, Body: m.loginAlertText(l, trouble, st)}
	// A trouble episode is named by its start, and its end by the
	// start of the connected state that ended it: a recovery is told
	// only when the stored state is connected, and every trouble left
	// a different state stored (a connector outage stores its own, see
	// above), so that start is the same for a process that sends the
	// alert again after a kill before SetAlerted, and differs between
	// episodes.
	episode := st.Since
	if trouble == "" && episode.IsZero() {
		episode = time.Now()
	}
	txn := loginAlertTxn(l.ID, trouble, episode)
	if _, err = m.mx.Bot().SendMessageEvent(ctx, user.ManagementRoom, event.EventMessage, content,
		mautrix.ReqSendEvent{TransactionID: txn}); err != nil {
		log.Warn().Err(err).Msg("Failed to send the login alert, trying again later")
		return
	}
	m.watch.delivered(l.ID)
	if err = m.db.Login.SetAlerted(ctx, l.ID, trouble); err != nil {
		log.Warn().Err(err).Msg("Failed to record the login alert")
	}
}

// noteUndelivered remembers the alert (trouble, "" for a recovery) last
// found undeliverable for the login and reports whether it is news, so
// that an alert waiting for a management room is not logged at every look.
func (w *loginWatch) noteUndelivered(loginID, trouble string) (news bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, had := w.undelivered[loginID]
	w.undelivered[loginID] = trouble
	return !had || prev != trouble
}

// delivered forgets the login's undeliverable alert: the user was told.
func (w *loginWatch) delivered(loginID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.undelivered, loginID)
}

func (m *Manager) loginAlertText(l *database.Login, trouble string, st LoginStatus) string {
	name := config.TruncateRunes(l.ID, maxNetworkNameRunes)
	if l.Name != "" {
		// The connector's words, bounded like any other input.
		name += " (" + config.TruncateRunes(l.Name, maxNetworkNameRunes) + ")"
	}
	network := m.networkName(l.ConnectorID)
	switch trouble {
	case troubleBadCredentials:
		return fmt.Sprintf("Your %s login %s was logged out by the network (bad credentials). "+
			"Its chats are not bridged until it logs in again: its password has to be updated where the "+
			"bridge's connector is set up, which is usually done by the bridge's admin.", network, name)
	case troubleDisconnected:
		why := "the network disconnected it"
		switch {
		case st.ConnectorOffline:
			why = "the bridge has no connection to its connector " + l.ConnectorID +
				", the program that connects it to " + network + "; if this lasts, tell the bridge's admin"
		case st.NotHeld:
			why = "its connector " + l.ConnectorID + " no longer holds it for you: the bridge's admin may have " +
				"removed it there or given it to someone else; if this is a mistake, tell them"
		}
		return fmt.Sprintf("Your %s login %s has been disconnected since %s (%s): messages to and from it "+
			"wait until it is back. I will tell you when it is.", network, name, FormatTime(st.Since), why)
	}
	return fmt.Sprintf("Your %s login %s is connected again.", network, name)
}

// FormatTime is how the bridge shows a time to users.
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// alertTimeout bounds an alert (its look-ups, send and record), which a
// stop does not cancel.
const alertTimeout = 10 * time.Second

func loginAlertTxn(loginID, trouble string, since time.Time) string {
	return hashedTxnID("dmb_alert_", loginID, trouble, strconv.FormatInt(since.UnixMilli(), 10))
}
