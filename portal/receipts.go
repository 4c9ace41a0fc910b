package portal

import (
	"context"
	"time"

	mas "maunium.net/go/mautrix/appservice"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/dmbridge/dmbridge/appservice"
	"github.com/dmbridge/dmbridge/connector"
	"github.com/dmbridge/dmbridge/database"
)

// markRead sends the user's read receipt to the network as mark_read, up to
// the newest message from the contact that the receipt covers. A receipt on
// the user's own message, or on an event the bridge did not map (a notice),
// covers what the contact sent before it.
func (m *Manager) markRead(ctx context.Context, p *database.Portal, login *database.Login, content *event.ReceiptEventContent) {
	if content == nil {
		return
	}
	if caps, ok := m.capabilities(login.ConnectorID); !ok || !caps.ReadReceipts {
		return
	}
	var upTo *database.Message
	for eventID, receipts := range *content {
		receipt, ok := receipts[event.ReceiptTypeRead][login.MatrixUser]
		// Servers that keep receipt data hand back the bridge's own
		// receipts (from remote read_receipt) marked; those need no echo.
		if !ok || receipt.Extra[mas.DoublePuppetKey] == appservice.DoublePuppetValue {
			continue
		}
		msg, err := m.readUpTo(ctx, p, eventID, receipt.Timestamp)
		if err != nil {
			m.log.Warn().Err(err).Msg("Failed to map read receipt, dropping it")
			continue
		}
		if msg != nil && (upTo == nil || msg.TS > upTo.TS) {
			upTo = msg
		}
	}
	if upTo == nil {
		return
	}
	_, err := m.conn.Command(ctx, login.ConnectorID, connector.OpMarkRead, &connector.Command{
		Login: login.ID, Chat: chatOf(p), UpTo: upTo.RemoteID,
	})
	if err != nil {
		m.log.Warn().Err(err).Msg("Failed to send read marker to the network, dropping it")
	}
}

func (m *Manager) readUpTo(ctx context.Context, p *database.Portal, eventID id.EventID, at time.Time) (*database.Message, error) {
	msg, err := m.db.Message.GetByMXID(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if msg != nil && msg.RoomID == p.RoomID {
		if !msg.IsMe && msg.Part == 0 {
			return msg, nil
		}
		// A later part may be the stand-in of a message from before an
		// upgrade (relations_elsewhere.go), posted when the contact
		// edited it: what the contact sent up to then is read, not only
		// that old message, which is read all the same if nothing was.
		latest, err := m.db.Message.LatestRemoteUpTo(ctx, p.RoomID, msg.TS)
		if err != nil || latest != nil || msg.IsMe {
			return latest, err
		}
		return msg, nil
	}
	if at.IsZero() {
		at = time.Now()
	}
	return m.db.Message.LatestRemoteUpTo(ctx, p.RoomID, at.UnixMilli())
}
