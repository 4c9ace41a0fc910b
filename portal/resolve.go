package portal

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/config"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/connector/server"
	"github.com/dmbridge/dmbridge/database"
)

// Refusals a user can act on. Callers show their text; the provisioning API
// also maps them to status codes.
var (
	ErrNotAllowed   = errors.New("you are not allowed to use this bridge")
	ErrNoLogin      = errors.New("you have no account on the network connected to the bridge")
	ErrUnknownLogin = errors.New("that login is not one of yours")
	ErrNotDM        = errors.New("the network answered with a chat that is not a direct chat")
)

// resolved is a contact the network found, with the DM chat with it.
type resolved struct {
	login   *database.Login
	contact *connector.Contact
	chat    *connector.Chat
}

// userLogins returns the logins a permitted user may start chats with. An
// empty loginID means all of them, the ones that can work now first, so the
// first answer comes from a login that is up.
func (m *Manager) userLogins(ctx context.Context, user id.UserID, loginID string) ([]*database.Login, error) {
	if m.cfg.PermissionLevel(user) < config.LevelUser {
		return nil, ErrNotAllowed
	}
	logins, err := m.db.Login.ByUser(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("load logins of %s: %w", user, err)
	}
	if loginID != "" {
		logins = slices.DeleteFunc(logins, func(l *database.Login) bool { return l.ID != loginID })
		if len(logins) == 0 {
			return nil, ErrUnknownLogin
		}
	}
	if len(logins) == 0 {
		return nil, ErrNoLogin
	}
	// Only logins the bridge may still use for the user (loginRefusal): a
	// chat started through a connector that may no longer serve them would
	// make a portal whose incoming messages the bridge refuses.
	refusal := ""
	logins = slices.DeleteFunc(logins, func(l *database.Login) bool {
		if why := m.loginRefusal(l); why != "" {
			refusal = why
			return true
		}
		return false
	})
	if len(logins) == 0 {
		return nil, loginUnavailable(refusal)
	}
	// Nor logins the network logged out: a chat started through one
	// could carry nothing. When none is left, the user is told to log in
	// again, which is theirs to do.
	var loggedOut error
	logins = slices.DeleteFunc(logins, func(l *database.Login) bool {
		if err := m.loggedOut(l); err != nil {
			loggedOut = err
			return true
		}
		return false
	})
	if len(logins) == 0 {
		return nil, loggedOut
	}
	up := func(l *database.Login) bool {
		return l.State == connector.LoginConnected && m.conn != nil && m.conn.Connected(l.ConnectorID)
	}
	slices.SortStableFunc(logins, func(a, b *database.Login) int {
		switch {
		case up(a) && !up(b):
			return -1
		case up(b) && !up(a):
			return 1
		}
		return 0
	})
	return logins, nil
}

// resolveContact asks the logins in turn to resolve what the user typed (or
// the contact id behind a ghost), creating the DM chat on the network. The
// first login that answers wins; the last error is returned if none does.
func (m *Manager) resolveContact(ctx context.Context, logins []*database.Login, identifier string, create bool) (*resolved, error) {
	if m.conn == nil {
		return nil, server.ErrNotConnected
	}
	var lastErr error
	for _, login := range logins {
		res, err := m.conn.Command(ctx, login.ConnectorID, connector.OpResolveIdentifier, &connector.Command{
			Login: login.ID, Identifier: identifier, Create: create,
		})
		if err != nil {
			zerolog.Ctx(ctx).Debug().Err(err).Str("login_id", login.ID).Msg("Login could not resolve identifier")
			lastErr = err
			continue
		}
		r, err := checkResolved(login, res)
		if err != nil {
			lastErr = err
			continue
		}
		return r, nil
	}
	return nil, lastErr
}

func checkResolved(login *database.Login, res *connector.Result) (*resolved, error) {
	if res == nil || res.Chat == nil || res.Chat.ID == "" {
		return nil, fmt.Errorf("resolve_identifier answer has no chat")
	}
	if res.Chat.Type != connector.ChatTypeDM {
		return nil, ErrNotDM
	}
	if len(res.Chat.ID) > connector.MaxIDBytes || len(res.Chat.With) > connector.MaxIDBytes {
		// The ids the events of the chat could not carry (section 7.3).
		return nil, fmt.Errorf("resolve_identifier answered a chat id longer than %d bytes", connector.MaxIDBytes)
	}
	contactID := res.Chat.With
	if contactID == "" {
		contactID = res.Chat.ID
	}
	contact := res.Contact
	if contact == nil || contact.ID == "" {
		contact = &connector.Contact{ID: contactID}
	}
	if contact.ID != contactID {
		return nil, fmt.Errorf("resolve_identifier answered contact %q but a chat with %q", contact.ID, contactID)
	}
	return &resolved{login: login, contact: contact, chat: res.Chat}, nil
}

// contactOfChat is the contact a DM chat is with, as ensurePortal stores it.
func contactOfChat(chat *connector.Chat) string {
	if chat.With != "" {
		return chat.With
	}
	return chat.ID
}

// UserMessage turns a failure into a sentence for the user.
func UserMessage(err error) string {
	var cerr *connector.Error
	switch {
	case errors.Is(err, ErrNotAllowed), errors.Is(err, ErrNoLogin), errors.Is(err, ErrUnknownLogin), errors.Is(err, ErrNotDM),
		errors.Is(err, ErrLoginUnavailable), errors.Is(err, ErrLoggedOut):
		return err.Error()
	case errors.As(err, &cerr) && cerr.Code == connector.ErrNotFound && cerr.Message == "":
		return "the network does not know that contact"
	case errors.As(err, &cerr) && cerr.Code == server.ErrNotConnected.Code:
		return "the network connector is offline, try again later"
	case err != nil:
		return describeError(err)
	}
	return ""
}
