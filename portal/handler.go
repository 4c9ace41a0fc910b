package portal

import (
	"context"
	"fmt"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

// The Manager is the connector server's Handler. These run on the
// connection's reader goroutine, so they only touch the database or queue work.

// Hello stores the logins the connector announces and refuses those whose
// Matrix user may not use the bridge or this connector, those that name the
// bridge's own users, and those that would move an existing login to
// another Matrix user or another connector. A refused login changes nothing
// in the database. The portals of a login it reports logged out end, as
// for a login event saying so (endLoggedOut).
func (m *Manager) Hello(ctx context.Context, connectorID string, hello *connector.Hello) []server.LoginRefusal {
	var refused []server.LoginRefusal
	var loggedOut []string
	for _, l := range hello.Logins {
		m.noteOwnerClaim(ctx, connectorID, l)
		if reason := m.refuseLogin(connectorID, l); reason != "" {
			refused = append(refused, server.LoginRefusal{Login: l.ID, Message: reason})
			continue
		}
		login := &database.Login{
			ID: l.ID, ConnectorID: connectorID, MatrixUser: id.UserID(l.MatrixUser), Name: l.Name, State: l.State,
		}
		stored, err := m.storeHelloLogin(ctx, login)
		if err != nil {
			m.log.Err(err).Str("login_id", l.ID).Msg("Failed to store login")
			refused = append(refused, server.LoginRefusal{Login: l.ID, Message: "the bridge could not store this login"})
			continue
		}
		if !stored {
			m.log.Warn().Str("login_id", l.ID).Str("connector_id", connectorID).Msg("Refused a hello that would move a login to another Matrix user or connector")
			refused = append(refused, server.LoginRefusal{Login: l.ID,
				Message: fmt.Sprintf("login %q already belongs to another Matrix user or connector; a login never changes either", l.ID)})
			continue
		}
		m.loginOwners.Store(l.ID, loginOwner{connectorID: connectorID, user: login.MatrixUser})
		if l.State == connector.LoginBadCredentials {
			loggedOut = append(loggedOut, l.ID)
		}
	}
	if len(loggedOut) > 0 {
		// The alert need not wait for the next look.
		signal(m.watch.wake)
		go m.endLoggedOut(connectorID, loggedOut)
	}
	return refused
}

// endLoggedOut ends the portals of logins a hello reported logged out
// (bad_credentials), as a login event with that state does (loginGone):
// the portals stayed, looking bridged, while the alert told the user their
// chats were not. It is queued on the login's lane, where its login events
// run too, once the manager runs (before Start the homeserver may still be
// down), and looks at the stored state again there: a login event that
// came later and brought the login back wins. A failure or a crash is
// made up for by the connector's next hello, which says it again; every
// step is idempotent, and a login without portals costs one query.
func (m *Manager) endLoggedOut(connectorID string, loginIDs []string) {
	if !m.untilRunning() {
		return
	}
	for _, loginID := range loginIDs {
		m.lanes.submit("login/"+loginID, "logged out in hello", func(ctx context.Context) {
			log := m.log.With().Str("connector_id", connectorID).Str("login_id", loginID).Str("action", "hello_logged_out").Logger()
			ctx = log.WithContext(ctx)
			login, err := m.db.Login.Get(ctx, loginID)
			if err != nil {
				log.Warn().Err(err).Msg("Failed to load the login its hello reported logged out; its next hello tries again")
				return
			} else if login == nil || login.State != connector.LoginBadCredentials || login.ConnectorID != connectorID {
				return
			}
			noop := func(context.Context) error { return nil }
			if err = m.loginGone(ctx, login, &connector.Event{Kind: connector.KindLogin, Login: loginID, State: login.State}, noop); err != nil {
				log.Warn().Err(err).Msg("Failed to end the portals of a login its hello reported logged out; its next hello tries again")
			}
		})
	}
}

// noteOwnerClaim marks a stored login of this connector contested when
// the hello names another owner for it, whatever else refuses the login
// (an owner the bridge does not serve is another owner all the same), and
// ends the contest when it names the stored owner (see contestedLogins).
// Without it, refusing the hello's login changed nothing for its events:
// the connector, now running the account for bob, kept posting into
// alice's rooms, and alice's messages kept going to bob's account.
func (m *Manager) noteOwnerClaim(ctx context.Context, connectorID string, l connector.Login) {
	owner, err := m.loginOwner(ctx, l.ID)
	if err != nil {
		// Not known either way: nothing is marked, as a wrong mark would
		// refuse (and so lose) the rightful owner's events. The store
		// below meets the same trouble and refuses the login.
		m.log.Warn().Err(err).Str("login_id", l.ID).Msg("Could not look up the owner of a login the hello names")
		return
	}
	if owner.connectorID != connectorID {
		// A new login, or another connector's: its events are refused
		// (or accepted) by the connector id alone.
		m.contested.note(l.ID, false)
		return
	}
	contested := owner.user != id.UserID(l.MatrixUser)
	if contested && !m.contested.has(l.ID) {
		m.log.Warn().Str("login_id", l.ID).Str("connector_id", connectorID).Stringer("owner", owner.user).
			Str("named_owner", l.MatrixUser).Msg("The connector names another owner for a login; refusing its events and commands until it names the owner again")
	}
	m.contested.note(l.ID, contested)
}

func (m *Manager) refuseLogin(connectorID string, l connector.Login) string {
	user := id.UserID(l.MatrixUser)
	if _, server, err := user.Parse(); err != nil || server == "" {
		return fmt.Sprintf("%q is not a Matrix user id", l.MatrixUser)
	}
	// The bot and the ghosts are the bridge's own puppets: a login they
	// "owned" would let the network act through them with no person behind it.
	if m.cfg.InAppserviceNamespace(user) {
		return fmt.Sprintf("%s is the bridge's own user (its bot or a ghost) and cannot own a login", l.MatrixUser)
	}
	if m.cfg.PermissionLevel(user) < config.LevelUser {
		return fmt.Sprintf("%s is not allowed to use this bridge", l.MatrixUser)
	}
	if !m.cfg.ConnectorMayServe(connectorID, user) {
		return fmt.Sprintf("connector %q is not allowed to serve %s (connector.connectors)", connectorID, l.MatrixUser)
	}
	return ""
}

// Check refuses events of logins that were not announced or are not
// allowed. (Chats other than DMs the server has refused already: that is
// the protocol's rule, not the bridge's.)
func (m *Manager) Check(ctx context.Context, connectorID string, ev *connector.Event) *connector.Error {
	return m.checkLogin(ctx, connectorID, ev.Login)
}

// checkLogin refuses a login that this connector's hello did not get
// accepted, that its hello named for another owner since (contested), or
// whose owner may no longer use the bridge or this connector.
func (m *Manager) checkLogin(ctx context.Context, connectorID, loginID string) *connector.Error {
	owner, err := m.loginOwner(ctx, loginID)
	if err != nil {
		return &connector.Error{Code: connector.ErrUnknown, Message: "the bridge could not look up the login", Retryable: true}
	}
	if owner.connectorID != connectorID {
		return &connector.Error{Code: connector.ErrForbidden, Message: fmt.Sprintf("login %q was not accepted in this connector's hello", loginID)}
	}
	if m.contested.has(loginID) {
		// The connector's hello named another owner for it: what it
		// sends now is not the stored owner's (see contestedLogins).
		return &connector.Error{Code: connector.ErrForbidden, Message: fmt.Sprintf("login %q was refused in this connector's hello: it named another Matrix user than the login's owner", loginID)}
	}
	if m.cfg.PermissionLevel(owner.user) < config.LevelUser || !m.cfg.ConnectorMayServe(connectorID, owner.user) {
		return &connector.Error{Code: connector.ErrForbidden, Message: fmt.Sprintf("%s is not allowed to use this bridge", owner.user)}
	}
	return nil
}

// loginOwner is what Check needs of a login. Only a hello changes it, so it
// is kept in memory: Check runs for every event on the connection's reader,
// and a database read each time bounded the intake.
type loginOwner struct {
	connectorID string
	user        id.UserID
}

// loginOwner returns the login's owner; a login never announced has a zero one.
func (m *Manager) loginOwner(ctx context.Context, loginID string) (loginOwner, error) {
	if cached, ok := m.loginOwners.Load(loginID); ok {
		return cached.(loginOwner), nil
	}
	login, err := m.db.Login.Get(ctx, loginID)
	if err != nil || login == nil {
		return loginOwner{}, err
	}
	owner := loginOwner{connectorID: login.ConnectorID, user: login.MatrixUser}
	m.loginOwners.Store(loginID, owner)
	return owner, nil
}

// Connected resends the commands that waited for this connector, and
// syncs the recent chats of logins it brought for the first time. The
// login alerts look again at once: the connector, and the states its
// hello brought, may end an outage (or start one) that the user hears of.
func (m *Manager) Connected(connectorID string) {
	signal(m.watch.wake)
	go func() {
		// Before Start the homeserver may still be down: both would fail,
		// and a login's chat sync would wait for the next connection.
		if !m.untilRunning() {
			return
		}
		go m.resumeCommands(connectorID)
		m.syncNewLogins(connectorID)
	}()
}

// Disconnected needs no action: commands wait in the database.
func (m *Manager) Disconnected(connectorID string) {
	m.log.Info().Str("connector_id", connectorID).Msg("Connector disconnected")
}

// Ephemeral handles typing and presence from the network, for logins this
// connector holds only. Ephemerals are never acknowledged and may be lost,
// so a refused one is dropped with a log line.
func (m *Manager) Ephemeral(ctx context.Context, connectorID string, e *connector.Ephemeral) {
	if cerr := m.checkLogin(ctx, connectorID, e.Login); cerr != nil {
		m.log.Debug().Str("connector_id", connectorID).Str("login_id", e.Login).Str("reason", cerr.Message).Msg("Dropped an ephemeral frame")
		return
	}
	m.remoteEphemeral(connectorID, e)
}

var _ appservice.Sink = (*Manager)(nil)
