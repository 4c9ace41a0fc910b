package xmppconnector

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dmbridge/dmbridge/connector"
)

const maxBackfill = 100

// backfill answers history requests from the archive. Only plain messages
// come back: edits, reactions and receipts of old history would need the
// state they change, which the bridge builds from live events.
func (a *account) backfill(ctx context.Context, cmd *connector.Command) (*connector.Result, error) {
	peer, conn, err := a.chatConn(cmd.Chat)
	if err != nil {
		return nil, err
	}
	limit := cmd.Limit
	if limit <= 0 || limit > maxBackfill {
		limit = maxBackfill
	}
	before := ""
	if cmd.Before != nil {
		// Message ids are archive ids, except for our own sends (the txn);
		// those are known to the archive under their stanza-id alias only
		// if catch-up saw them, so fall back to the id itself.
		before = *cmd.Before
	}
	page, err := conn.queryArchive(ctx, archiveQuery{with: peer, before: &before, max: limit})
	var iqErr *iqError
	if errors.As(err, &iqErr) && iqErr.Condition == "item-not-found" {
		return nil, &connector.Error{Code: connector.ErrNotFound, Message: fmt.Sprintf("message %q is not in the archive", before)}
	}
	if err != nil {
		return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
	}
	if page.cut {
		// The items newer than the oversized one never came, and asking
		// again would end the connection again.
		return nil, archiveCutError(page)
	}
	res := &connector.Result{HasMore: !page.complete}
	for i := range page.items {
		ev, err := a.archivedMessage(ctx, peer, &page.items[i])
		if err != nil {
			return nil, err
		}
		if ev != nil {
			res.Messages = append(res.Messages, *ev)
		}
	}
	return res, nil
}

// archivedMessage converts a plain archived message; nil for anything else.
func (a *account) archivedMessage(ctx context.Context, peer string, item *mamItem) (*connector.Event, error) {
	m := item.msg
	if m.Type == "groupchat" || m.Type == "error" || m.Replace != nil || m.Retract != nil || m.Reactions != nil || (m.Body == "" && m.OOB == nil) {
		return nil, nil
	}
	ev := &connector.Event{
		Kind:  connector.KindMessage,
		Login: a.login,
		Chat:  &connector.Chat{ID: peer, Type: connector.ChatTypeDM, With: peer},
		ID:    item.id,
	}
	if ts, ok := item.delay.time(); ok {
		ev.TS = ts.UnixMilli()
	}
	if bareOf(m.From) == a.login {
		ev.Sender = &connector.Sender{ID: a.login, IsMe: true}
		if m.OriginID != nil {
			res, _, found, err := a.store.TxnResult(ctx, m.OriginID.ID)
			if err != nil {
				return nil, err
			}
			if found && res != nil && res.ID != "" {
				ev.ID, ev.Txn = res.ID, m.OriginID.ID
			}
		}
	} else {
		ev.Sender = &connector.Sender{ID: peer}
	}
	ev.Text, ev.Attachments = messageContent(m)
	if m.Reply != nil && m.Reply.ID != "" {
		ev.ReplyTo, _ = a.resolve(ctx, peer, m.Reply.ID)
	}
	if ev.Text == "" && len(ev.Attachments) == 0 {
		return nil, nil
	}
	return ev, nil
}

// Listing recent chats reads the archive backward, all chats at once, at
// most listChatsPages pages: an account whose archive is one long
// conversation must not be read to its start to find a second one.
const (
	maxListChats   = 100
	listChatsPages = 10
)

// listChats answers list_chats from the archive: the peers of the newest
// messages, newest first, each once.
func (a *account) listChats(ctx context.Context, cmd *connector.Command) (*connector.Result, error) {
	conn, err := a.live()
	if err != nil {
		return nil, err
	}
	limit := cmd.Limit
	if limit <= 0 || limit > maxListChats {
		limit = maxListChats
	}
	res := &connector.Result{Chats: []connector.Chat{}}
	seen := map[string]bool{}
	before := ""
	for page := 0; page < listChatsPages && len(res.Chats) < limit; page++ {
		items, err := conn.queryArchive(ctx, archiveQuery{before: &before, max: maxBackfill})
		if err != nil {
			return nil, &connector.Error{Code: connector.ErrNetwork, Message: err.Error(), Retryable: true}
		}
		if items.cut {
			return nil, archiveCutError(items)
		}
		for i := len(items.items) - 1; i >= 0 && len(res.Chats) < limit; i-- {
			peer := a.archivePeer(items.items[i].msg)
			if peer == "" || seen[peer] {
				continue
			}
			seen[peer] = true
			res.Chats = append(res.Chats, connector.Chat{ID: peer, Type: connector.ChatTypeDM, With: peer})
		}
		if items.complete || items.first == "" || items.first == before {
			break
		}
		before = items.first
	}
	return res, nil
}

// archivePeer is the other party of an archived one-to-one message, or ""
// for anything that is not one (group chat, errors, our own account).
func (a *account) archivePeer(m *message) string {
	if m == nil || m.Type == "groupchat" || m.Type == "error" {
		return ""
	}
	peer := bareOf(m.From)
	if peer == a.login || peer == "" {
		peer = bareOf(m.To)
	}
	if peer == a.login || !strings.Contains(peer, "@") {
		return ""
	}
	return peer
}

// archiveCutError answers a history request whose archive page the
// connection's end cut short at an oversized item: not retryable, since
// every retry would end the connection again at the same item.
func archiveCutError(page archivePage) *connector.Error {
	return &connector.Error{Code: connector.ErrNetwork, Message: (&errArchiveCut{id: page.last}).Error()}
}
