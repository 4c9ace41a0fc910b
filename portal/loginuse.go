package portal

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/database"
)

// A login is used in both directions, and each direction asks the same
// questions: the network side in checkLogin (handler.go), the Matrix side
// here. A revocation that is checked one way only would leave a connector
// the admin cut off from a user still receiving that user's messages.

// ErrLoginUnavailable is a start-chat (or a DM started with a ghost)
// through a login the bridge may no longer use for its user: its connector
// may no longer serve them, or the connector now names another Matrix user
// as the login's owner. Callers show its text, which carries the reason.
var ErrLoginUnavailable = errors.New("your account on the network cannot be used through this bridge now")

// loginRefused is why a command of such a login, queued before the
// refusal, did not go (see flushPass): the reason, as loginRefusal gives it.
type loginRefused string

func (r loginRefused) Error() string { return string(r) }

// queuedRefusal is loginRefusal for a stored command, from the in-memory
// owner cache (a flush reads no login row); seen keeps the answer per login
// for the rest of the pass. A login gone from the database is left to the
// paths that handle that.
func (m *Manager) queuedRefusal(ctx context.Context, pc *database.PendingCommand, seen map[string]string) (string, error) {
	if reason, ok := seen[pc.LoginID]; ok {
		return reason, nil
	}
	owner, err := m.loginOwner(ctx, pc.LoginID)
	if err != nil {
		return "", fmt.Errorf("look up the owner of login %s: %w", pc.LoginID, err)
	}
	reason := ""
	if owner.user != "" {
		reason = m.refusalFor(pc.LoginID, owner.connectorID, owner.user)
	}
	seen[pc.LoginID] = reason
	return reason, nil
}

// loginRefusal says why the user's Matrix events in the login's portals no
// longer go to the network, or "" when they do. It asks what checkLogin
// asks of the connector's events, so that a user blocked, a connector no
// longer allowed to serve the user, or a login whose connector named
// another owner (contested.go) stops both ways.
func (m *Manager) loginRefusal(login *database.Login) string {
	return m.refusalFor(login.ID, login.ConnectorID, login.MatrixUser)
}

// refusalFor is loginRefusal from the parts of a login, for the callers
// that have them from the in-memory owner cache (loginOwner).
func (m *Manager) refusalFor(loginID, connectorID string, user id.UserID) string {
	switch {
	case m.cfg.PermissionLevel(user) < config.LevelUser:
		return "you are not allowed to use this bridge any more"
	case !m.cfg.ConnectorMayServe(connectorID, user):
		return fmt.Sprintf("the bridge's connector %s, which holds this account, may no longer serve you; ask the bridge's admin", connectorID)
	case m.contested.has(loginID):
		return fmt.Sprintf("the bridge's connector %s now names another Matrix user as this account's owner; ask the bridge's admin", connectorID)
	}
	return ""
}

// contestedLogins are the logins whose own connector's latest hello that
// named them gave another Matrix user as their owner. The hello is
// refused for them (a login never changes its owner), but the connector
// then runs the account for someone else: what it sends for the login is
// not the stored owner's (checkLogin refuses it, M_FORBIDDEN), and the
// owner's messages must not go to it (loginRefusal). A hello of the
// connector that names the stored owner again ends it.
//
// It is kept in memory only: every connection starts with a hello, before
// any event or command, so a restarted bridge learns it again from the
// connector's first hello. (A login that hello does not name at all is not
// contested then; the login status shows it as not held, see loginwatch.go.)
type contestedLogins struct {
	ids sync.Map // login id -> struct{}
}

func (c *contestedLogins) has(loginID string) bool {
	_, ok := c.ids.Load(loginID)
	return ok
}

// note records what a hello of the login's own connector said of its
// owner: contested when it named another user than the stored one.
func (c *contestedLogins) note(loginID string, contested bool) {
	if contested {
		c.ids.Store(loginID, struct{}{})
	} else {
		c.ids.Delete(loginID)
	}
}

// loginUnavailable wraps ErrLoginUnavailable with the reason, for userLogins.
func loginUnavailable(reason string) error {
	return fmt.Errorf("%w (%s)", ErrLoginUnavailable, reason)
}
