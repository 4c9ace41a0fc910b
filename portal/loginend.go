package portal

import (
	"context"
	"errors"
	"fmt"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// A login logged out (bad_credentials) has its portals ended (loginGone).
// Its login events run on the login's lane, its chats' events on their own
// lanes, in parallel: a message the network delivered before the logout
// could be applied after the cleanup, find no portal, and open a new one,
// a room that looks bridged for a login that is gone, right after the
// farewell said it was not. So the point of the stream where the login was
// logged out is stored (login.ended_seq), and an event from up to there
// opens no portal.
//
// loginEnds makes the check and the portal row one step against the
// logout: the event takes the login's mutex for its check and the row, the
// logout for storing its state and end point. Either the row exists before
// the logout lists the login's portals (and is ended with them, after the
// event, which holds the chat's lock), or the event sees the end point.
// Only an event that would create a portal takes it, so the messages of
// existing portals do not queue behind each other.

// claimPortal creates the row of key's portal unless the login was logged
// out at or after seq (the event's seq on its connector's stream); ended
// reports that, and then nothing is created. An existing portal is left to
// the caller: it was made before the logout, which ends it. The caller
// holds the chat's lock.
func (m *Manager) claimPortal(ctx context.Context, key database.PortalKey, contactID string, seq int64) (ended bool, err error) {
	p, err := m.db.Portal.Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("load portal for %s: %w", key.ChatID, err)
	} else if p != nil {
		return false, nil
	}
	unlock := m.loginEnds.Lock(key.LoginID)
	defer unlock()
	login, err := m.db.Login.Get(ctx, key.LoginID)
	if err != nil {
		return false, fmt.Errorf("load login %s: %w", key.LoginID, err)
	}
	if login != nil && seq <= login.EndedSeq {
		return true, nil
	}
	if _, err = m.db.Portal.GetOrCreate(ctx, key, contactID); err != nil {
		return false, fmt.Errorf("create portal for %s: %w", key.ChatID, err)
	}
	return false, nil
}

// storeLoginState records a login event's state; bad_credentials with its seq
// goes with its seq as the login's end point (see claimPortal).
func (m *Manager) storeLoginState(ctx context.Context, loginID, state string, seq int64) error {
	if state != connector.LoginBadCredentials || seq == 0 {
		return m.db.Login.SetState(ctx, loginID, state)
	}
	unlock := m.loginEnds.Lock(loginID)
	defer unlock()
	return m.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := m.db.Login.SetState(ctx, loginID, state); err != nil {
			return err
		}
		return m.db.Login.SetEnded(ctx, loginID, seq)
	})
}

// storeHelloLogin stores a login of a hello (storeLogin). A hello that
// says bad_credentials is a logout at the end of what the connector sent
// before it: every event accepted so far (acked, the connector's earlier
// connection has stopped storing) comes from before it.
func (m *Manager) storeHelloLogin(ctx context.Context, login *database.Login) (stored bool, err error) {
	if login.State != connector.LoginBadCredentials {
		return m.storeLogin(ctx, login)
	}
	unlock := m.loginEnds.Lock(login.ID)
	defer unlock()
	if login.EndedSeq, err = m.db.Stream.AckedSeq(ctx, login.ConnectorID); err != nil {
		return false, fmt.Errorf("read acked_seq of %s: %w", login.ConnectorID, err)
	}
	return m.storeLogin(ctx, login)
}

// ErrLoggedOut is a start-chat (or a DM started with a ghost) through a
// login the network logged out (bad_credentials): a portal for it could
// carry nothing, and the logout ended its portals just before. Unlike
// ErrLoginUnavailable it is the user's to fix, by logging in again; its
// text (a *loggedOutError) says so and names the login.
var ErrLoggedOut = errors.New("your login is logged out")

type loggedOutError struct{ network, loginID string }

func (e *loggedOutError) Error() string {
	return fmt.Sprintf("your %s login %s is logged out; log in again", e.network, config.TruncateRunes(e.loginID, maxNetworkNameRunes))
}

func (e *loggedOutError) Is(target error) bool { return target == ErrLoggedOut }

// loggedOut is the refusal for a login that is logged out, nil otherwise.
func (m *Manager) loggedOut(login *database.Login) error {
	if login.State != connector.LoginBadCredentials {
		return nil
	}
	return &loggedOutError{network: m.networkName(login.ConnectorID), loginID: login.ID}
}

// claimForUser creates the row of key's portal for something the user (or
// the login's first connection) asked for: a start-chat, a DM started
// with a ghost, the sync of a new login's recent chats. These ask the
// network first, and the login may be logged out meanwhile; as in
// claimPortal, the login's state is read under its mutex, so either the row
// exists before the logout lists the login's portals (and is ended with
// them) or the state read here is the logout, and ErrLoggedOut is returned
// with nothing created. The caller holds the chat's lock.
func (m *Manager) claimForUser(ctx context.Context, key database.PortalKey, contactID string) (*database.Portal, error) {
	unlock := m.loginEnds.Lock(key.LoginID)
	defer unlock()
	login, err := m.db.Login.Get(ctx, key.LoginID)
	if err != nil {
		return nil, fmt.Errorf("load login %s: %w", key.LoginID, err)
	} else if login == nil {
		return nil, fmt.Errorf("login %s is gone", key.LoginID)
	}
	if err = m.loggedOut(login); err != nil {
		return nil, err
	}
	p, err := m.db.Portal.GetOrCreate(ctx, key, contactID)
	if err != nil {
		return nil, fmt.Errorf("create portal for %s: %w", key.ChatID, err)
	}
	return p, nil
}
