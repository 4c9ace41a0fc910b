package bot

import (
	"context"
	"fmt"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// Login alerts: a user whose login can no longer reach the network is told in
// their management room, once per problem, instead of finding out from
// messages that never arrive. The state lives in memory: after a restart a
// problem that persists is reported once more, which is better than never.

// maxAlertCheck bounds how long a bad_credentials login waits for its notice.
const maxAlertCheck = 30 * time.Second

// WatchLogins checks the logins until ctx ends. It tells a login's owner when
// the login reports bad_credentials, and when it has been disconnected (its
// own state, or its connector away) for bridge.login_alert_after.
func (b *Bot) WatchLogins(ctx context.Context) {
	after := b.cfg.Bridge.LoginAlertAfter.D()
	every := maxAlertCheck
	if after > 0 && after/4 < every {
		every = max(after/4, 100*time.Millisecond)
	}
	w := &loginWatch{bot: b, after: after, alerted: map[string]string{}, offlineSince: map[string]time.Time{}}
	ticker := time.NewTicker(every)
	defer ticker.Stop()
	for {
		w.check(ctx, time.Now())
		select {
		case <-ticker.C:
		case <-ctx.Done():
			return
		}
	}
}

type loginWatch struct {
	bot   *Bot
	after time.Duration
	// alerted is the problem each login was last reported for.
	alerted map[string]string
	// offlineSince is when each connector was first seen without a connection.
	offlineSince map[string]time.Time
}

// maxWatchedLogins bounds one pass; a bridge with more logins than this is
// far beyond what one instance serves.
const maxWatchedLogins = 100000

func (w *loginWatch) check(ctx context.Context, now time.Time) {
	logins, err := w.bot.db.Stats().LoginStatuses(ctx, maxWatchedLogins)
	if err != nil {
		if ctx.Err() == nil {
			w.bot.log.Warn().Err(err).Msg("Login alerts could not list logins")
		}
		return
	}
	for _, l := range logins {
		if w.bot.conn != nil && !w.bot.conn.Connected(l.ConnectorID) {
			if _, ok := w.offlineSince[l.ConnectorID]; !ok {
				w.offlineSince[l.ConnectorID] = now
			}
		} else {
			delete(w.offlineSince, l.ConnectorID)
		}
	}
	for _, l := range logins {
		problem, text := w.problem(l, now)
		if problem == "" {
			delete(w.alerted, l.ID)
			continue
		}
		if w.alerted[l.ID] == problem {
			continue
		}
		if w.tell(ctx, l.MatrixUser, text) {
			w.alerted[l.ID] = problem
		}
	}
}

// problem names what is wrong with a login now, and the notice for it.
func (w *loginWatch) problem(l *database.LoginStatus, now time.Time) (string, string) {
	network := w.bot.networkName(l.ConnectorID)
	switch {
	case l.State == connector.LoginBadCredentials:
		return "bad_credentials", fmt.Sprintf("⚠️ Your %s login %s was logged out (bad credentials): "+
			"nothing is bridged for it until you log in again in the connector.", network, escape(l.ID))
	case w.after <= 0:
		return "", ""
	case l.State == connector.LoginDisconnected && now.Sub(l.UpdatedAt) >= w.after:
		return "disconnected", fmt.Sprintf("⚠️ Your %s login %s has been disconnected since %s; "+
			"messages wait until it reconnects.", network, escape(l.ID), l.UpdatedAt.Format(time.RFC1123))
	}
	if since, ok := w.offlineSince[l.ConnectorID]; ok && now.Sub(since) >= w.after {
		return "connector_offline", fmt.Sprintf("⚠️ The connector of your %s login %s has been offline since %s; "+
			"messages wait until it is back.", network, escape(l.ID), since.UTC().Format(time.RFC1123))
	}
	return "", ""
}

// tell posts a notice in the user's management room; false if they have none
// yet (they are told once they create one and the problem persists).
func (w *loginWatch) tell(ctx context.Context, user id.UserID, text string) bool {
	u, err := w.bot.db.User.Get(ctx, user)
	if err != nil || u == nil || u.ManagementRoom == "" {
		return false
	}
	w.bot.reply(ctx, u.ManagementRoom, text)
	return true
}

// networkName is the network's name from the connector's hello, or its id.
func (b *Bot) networkName(connectorID string) string {
	if b.conn != nil {
		if hello, ok := b.conn.Hello(connectorID); ok && hello.Network.Name != "" {
			return escape(hello.Network.Name)
		}
	}
	return escape(connectorID)
}
